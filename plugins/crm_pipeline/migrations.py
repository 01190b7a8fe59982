"""Migrations of the published history tables: what brings a table published by an
earlier version of the project to the shape the dbt project builds now.

A history table keeps the slices of earlier dates, and the publish refuses to mix shapes
(``publish.check_same_columns``). A change to such a table's contract therefore ships
here as a migration: columns added at the end of the table, NULL on the slices published
before they existed. ``crm migrate`` applies the pending ones in one transaction and
records each in ``ops.schema_migrations``; a migration whose table does not exist yet is
recorded without doing anything (the first publish creates the table in its new shape).
See docs/design.md, "Changing a published table"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from crm_pipeline.warehouse import ident

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.warehouse import Warehouse

LEDGER = "ops.schema_migrations"


@dataclass(frozen=True)
class Migration:
    id: str
    table: str  # a table of the schema published
    description: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type) added at the end of the table


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_credit_grades_reconstructed", "customer_credit_grades",
        "credit grades say which indicators rest on data reconstructed on the first night",
        (("is_reconstructed", "boolean"), ("reconstructed_indicators", "varchar(1000)")),
    ),
    Migration(
        "0002_clv_uncertainty", "customer_lifetime_value",
        "lifetime value carries P(alive) in 90 days and 10th-90th percentile bands of P(alive) and CLV",
        (("prob_alive_90d", "numeric(9,6)"), ("prob_alive_p10", "numeric(9,6)"), ("prob_alive_p90", "numeric(9,6)"),
         ("clv_12m_p10", "numeric(18,2)"), ("clv_12m_p90", "numeric(18,2)")),
    ),
    Migration(
        "0003_clv_standard_errors", "clv_model_runs",
        "model runs carry the standard errors of the fitted parameters",
        tuple((f"se_{name}", "numeric(24,10)") for name in ("r", "alpha", "a", "b", "p", "q", "gamma")),
    ),
)


@dataclass
class Applied:
    migration: Migration
    added: list[str]  # columns added (empty: the table did not exist or already had them)


def _ensure_ledger(wh: "Warehouse") -> None:
    wh.execute("create schema if not exists ops")
    wh.execute(f"create table if not exists {LEDGER} (id varchar, description varchar, applied_at timestamp)")


def pending(wh: "Warehouse") -> list[Migration]:
    """The migrations not yet recorded as applied on this warehouse."""
    if not wh.table_exists("ops", "schema_migrations"):
        return list(MIGRATIONS)
    done = {row[0] for row in wh.query(f"select id from {LEDGER}")}
    return [m for m in MIGRATIONS if m.id not in done]


def apply_pending(wh: "Warehouse") -> list[Applied]:
    """Apply every pending migration, all in one transaction, and record them."""
    applied: list[Applied] = []
    with wh.transaction():
        _ensure_ledger(wh)
        for migration in pending(wh):
            added: list[str] = []
            if wh.table_exists("published", migration.table):
                have = {c.lower() for c in wh.columns("published", migration.table)}
                for name, sql_type in migration.columns:
                    if name not in have:
                        wh.execute(f"alter table published.{ident(migration.table)} "
                                   f"add column {ident(name)} {sql_type}")
                        added.append(name)
            wh.execute(f"insert into {LEDGER} values (?, ?, ?)",
                       (migration.id, migration.description, datetime.now(timezone.utc).replace(tzinfo=None)))
            applied.append(Applied(migration, added))
    return applied
