"""Whether the warehouse already holds the project's dbt seeds, so that a night loads and
tests them only when they changed.

Seeds are the project's own tables of business numbers (docs/rules.md): they change with
the project, not with the night's data. After a night has loaded and tested them, the
warehouse records their fingerprint and a checksum of the loaded tables
(``ops.dbt_seed_state``); the next night skips the seeds and the tests that read only them
when both are the same. Anything else (a new warehouse, a changed seed or
``dbt_project.yml``, another dbt target, a seed table dropped or edited in the warehouse)
loads and tests them again. docs/design.md, "Seeds load when they change".
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from crm_pipeline.file_digest import files_md5
from crm_pipeline.settings import DBT_PROJECT_DIR
from crm_pipeline.warehouse import Warehouse, ident

#: the schema dbt loads the seeds into (``+schema: config`` in dbt_project.yml)
SEED_SCHEMA = "config"
SEED_STATE_DDL = ("create table if not exists ops.dbt_seed_state (fingerprint varchar not null, "
                  "target varchar not null, loaded_at timestamp not null, tables_checksum varchar)")


def seed_files(project_dir: Path = DBT_PROJECT_DIR) -> list[Path]:
    return sorted((Path(project_dir) / "seeds").glob("*.csv"))


def fingerprint(target: str, project_dir: Path = DBT_PROJECT_DIR) -> str:
    """md5 of everything a seed's loaded table depends on: the seed folder's files (CSV
    and YAML), ``dbt_project.yml`` (seed column types and schema) and the dbt target."""
    root = Path(project_dir)
    return files_md5(root, [root / "dbt_project.yml", *(root / "seeds").rglob("*")], f"target={target}")


def tables_checksum(wh: Warehouse, project_dir: Path = DBT_PROJECT_DIR) -> str | None:
    """md5 over every seed table's rows as the warehouse holds them (each row as Python
    reads it, in sorted order); None when a seed table is missing. Seed tables are a few
    hundred rows, so reading them is cheaper than asking each engine to spell a row as
    text; the checksum is compared only with the same warehouse's own earlier one."""
    digest = hashlib.md5()
    for path in seed_files(project_dir):
        if not wh.table_exists(SEED_SCHEMA, path.stem):
            return None
        rows = sorted(repr(tuple(row)) for row in wh.query(f"select * from {ident(SEED_SCHEMA)}.{ident(path.stem)}"))
        digest.update(f"{path.stem}=".encode() + "\n".join(rows).encode() + b"\0")
    return digest.hexdigest()


def seeds_current(wh: Warehouse, fp: str, project_dir: Path = DBT_PROJECT_DIR) -> bool:
    """Whether the warehouse's seed tables are the ones this project and target load."""
    if not wh.table_exists("ops", "dbt_seed_state"):
        return False
    recorded = wh.query("select fingerprint, tables_checksum from ops.dbt_seed_state")
    if len(recorded) != 1 or recorded[0][0] != fp or recorded[0][1] is None:
        return False
    return tables_checksum(wh, project_dir) == recorded[0][1]


def record_loaded(wh: Warehouse, fp: str, target: str) -> None:
    """Record that the seeds of fingerprint ``fp`` were loaded and passed their tests."""
    checksum = tables_checksum(wh)
    with wh.transaction():
        wh.execute(SEED_STATE_DDL)
        wh.execute("delete from ops.dbt_seed_state")
        wh.execute("insert into ops.dbt_seed_state (fingerprint, target, loaded_at, tables_checksum) "
                   "values (?, ?, current_timestamp, ?)", (fp, target, checksum))


def forget(wh: Warehouse) -> None:
    """Make the next night load the seeds again (a failed stage may have left them half-loaded)."""
    if wh.table_exists("ops", "dbt_seed_state"):
        wh.execute("delete from ops.dbt_seed_state")
