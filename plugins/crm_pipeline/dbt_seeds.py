"""Whether the warehouse already holds the project's dbt seeds, so that a night loads and
tests them only when they changed.

Seeds are the project's own tables of business numbers (docs/rules.md): they change with
the project, not with the night's data. After a night has loaded and tested them, the
warehouse records their fingerprint (``ops.dbt_seed_state``); the next night skips the
seeds and the tests that read only them when the fingerprint is the same and every seed
table is there with as many rows as its file. Anything else (a new warehouse, a changed
seed or ``dbt_project.yml``, another dbt target, a seed table dropped or edited to another
row count) loads and tests them again. docs/design.md, "Seeds load when they change".
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from crm_pipeline.settings import DBT_PROJECT_DIR
from crm_pipeline.warehouse import Warehouse, ident

#: the schema dbt loads the seeds into (``+schema: config`` in dbt_project.yml)
SEED_SCHEMA = "config"
SEED_STATE_DDL = ("create table if not exists ops.dbt_seed_state (fingerprint varchar not null, "
                  "target varchar not null, loaded_at timestamp not null)")


def seed_files(project_dir: Path = DBT_PROJECT_DIR) -> list[Path]:
    return sorted((Path(project_dir) / "seeds").glob("*.csv"))


def fingerprint(target: str, project_dir: Path = DBT_PROJECT_DIR) -> str:
    """md5 of everything a seed's loaded table depends on: the seed folder's files (CSV
    and YAML), ``dbt_project.yml`` (seed column types and schema) and the dbt target."""
    root = Path(project_dir)
    digest = hashlib.md5(f"target={target}\0".encode())
    for path in [root / "dbt_project.yml", *sorted((root / "seeds").rglob("*"))]:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _csv_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def seeds_current(wh: Warehouse, fp: str, project_dir: Path = DBT_PROJECT_DIR) -> bool:
    """Whether the warehouse's seed tables are the ones this project and target load."""
    if not wh.table_exists("ops", "dbt_seed_state"):
        return False
    if [r[0] for r in wh.query("select fingerprint from ops.dbt_seed_state")] != [fp]:
        return False
    for path in seed_files(project_dir):
        if not wh.table_exists(SEED_SCHEMA, path.stem):
            return False
        if wh.scalar(f"select count(*) from {ident(SEED_SCHEMA)}.{ident(path.stem)}") != _csv_rows(path):
            return False
    return True


def record_loaded(wh: Warehouse, fp: str, target: str) -> None:
    """Record that the seeds of fingerprint ``fp`` were loaded and passed their tests."""
    with wh.transaction():
        wh.execute(SEED_STATE_DDL)
        wh.execute("delete from ops.dbt_seed_state")
        wh.execute("insert into ops.dbt_seed_state values (?, ?, current_timestamp)", (fp, target))


def forget(wh: Warehouse) -> None:
    """Make the next night load the seeds again (a failed stage may have left them half-loaded)."""
    if wh.table_exists("ops", "dbt_seed_state"):
        wh.execute("delete from ops.dbt_seed_state")
