"""Publishing on a Spark warehouse: each published table is a view switched to the night's version.

Spark SQL has no transaction over several statements and plain Parquet tables take no
row-level delete, so a Spark warehouse publishes the way a lakehouse does
(docs/design.md, "Publishing on Spark"):

* a **current** table's night is written as a new table
  ``published_store.<table>__<version>``; the view ``published.<table>`` is then re-pointed
  at it by one ``create or replace view``, one update of the catalog: a reader sees the
  previous version or the new one, never a mix. The previous version stays for queries
  still reading it; older ones are dropped.
* a **history** table is stored in ``published_store.<table>``, partitioned by its key. The
  night's slice is written to a folder of its own, ``<key>=<value>/<version>`` (Spark's
  file commit protocol: all files or none), then the key's partition is pointed at that
  folder by one ``alter table … partition … set location`` (or added); versions of a slice
  beyond the newest two are removed. ``published.<table>`` is a view over it in the
  audit table's column order, so a re-run or a backfill replaces exactly its own slice.
* ``ops.published_versions`` gets one row per table after its switch, naming the version.

Tables switch one after another, in the order of ``PUBLISHED_TABLES``: during a publish a
reader may see some tables at the new night and the others still at the previous one, each
of them whole. ``ops.published_versions`` tells which version each table shows.
"""

from __future__ import annotations

import shutil
import time
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from crm_pipeline.publish import (
    AUDIT_SCHEMA, PUBLISHED_SCHEMA, PUBLISHED_TABLES, PublishedTable, PublishError,
    PublishResult, behind_published, check_same_columns, fault_point, publish_lock,
)
from crm_pipeline.spark_session import spark_literal
from crm_pipeline.status import remember_published
from crm_pipeline.warehouse import Warehouse, ident

#: where the versions behind the published views are kept
STORE_SCHEMA = "published_store"
#: versions of a current table kept behind its view: the new one and the one before it
KEPT_VERSIONS = 2

VERSIONS_DDL = """create table if not exists ops.published_versions (
    table_name string, as_of date, run_id string, mode string, rows_published bigint,
    published_at timestamp, version string) using parquet"""


def new_version() -> str:
    """A version name that sorts by time and is a valid part of a table name."""
    return "v" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")


def publish_spark(wh: Warehouse, as_of: date, run_id: str, *,
                  tables: tuple[PublishedTable, ...] = PUBLISHED_TABLES,
                  max_wait_seconds: float = 600.0) -> PublishResult:
    """Publish every audit table of ``tables`` that exists on the Spark warehouse ``wh``."""
    if wh.kind != "spark":
        raise ValueError("publish_spark publishes to a Spark warehouse")
    started = time.perf_counter()
    for schema in ("ops", PUBLISHED_SCHEMA, STORE_SCHEMA):
        wh.execute(f"create schema if not exists {schema}")
    wh.execute(VERSIONS_DDL)
    present = [t for t in tables if wh.table_exists(AUDIT_SCHEMA, t.name)]
    missing = [t.name for t in tables if t.required and t not in present]
    if missing:
        raise PublishError(f"audit tables missing, nothing published: {', '.join(missing)}")
    for t in present:  # every shape checked before the first switch
        if t.mode == "history" and wh.table_exists(PUBLISHED_SCHEMA, t.name):
            check_same_columns(wh, t.name)
    version = new_version()
    published: dict[str, int] = {}
    skipped: list[str] = []
    with publish_lock(Path(wh.config.spark_dir) / "publish.lock", max_wait_seconds):
        for i, t in enumerate(present):
            if t.mode == "current":
                if behind_published(wh, t.name, as_of):
                    skipped.append(t.name)
                    published[t.name] = 0
                    continue
                _publish_current(wh, t, version)
            else:
                _publish_history(wh, t, version)
            rows = int(wh.scalar(f"select count(*) from {AUDIT_SCHEMA}.{ident(t.name)}"))
            published[t.name] = rows
            wh.execute("insert into ops.published_versions values (?, ?, ?, ?, ?, ?, ?)",
                       (t.name, as_of, run_id, t.mode, rows,
                        datetime.now(timezone.utc).replace(tzinfo=None), version))
            if i == 0:
                fault_point("after_first_table")
    remember_published(wh)  # crm status reads it while a night holds the catalog
    return PublishResult(as_of, published, skipped, 1, round(time.perf_counter() - started, 3), version=version)


def _view(wh: Warehouse, name: str, select: str) -> None:
    """``published.<name>`` as ``select``, with the audit table's descriptions."""
    table_comment, column_comments = wh.comments(AUDIT_SCHEMA, name)
    columns = ", ".join(
        ident(c) + (f" comment {spark_literal(column_comments[c])}" if column_comments.get(c) else "")
        for c in wh.columns(AUDIT_SCHEMA, name))
    comment = f" comment {spark_literal(table_comment)}" if table_comment else ""
    wh.execute(f"create or replace view {PUBLISHED_SCHEMA}.{ident(name)} ({columns}){comment} as {select}")


def _publish_current(wh: Warehouse, t: PublishedTable, version: str) -> None:
    stored = f"{STORE_SCHEMA}.{ident(t.name + '__' + version)}"
    wh.execute(f"create table {stored} using parquet as select * from {AUDIT_SCHEMA}.{ident(t.name)}")
    _view(wh, t.name, f"select * from {stored}")
    prefix = f"{t.name}__v"
    versions = sorted(name for name in wh.tables(STORE_SCHEMA) if name.startswith(prefix)
                      and name[len(prefix):].isdigit())
    for old in versions[:-KEPT_VERSIONS]:
        wh.execute(f"drop table if exists {STORE_SCHEMA}.{ident(old)}")


def _location(wh: Warehouse, relation: str) -> str:
    for name, value, *_ in wh.query(f"describe table extended {relation}"):
        if name == "Location":
            return value
    raise PublishError(f"{relation} has no location in the Spark catalog")


def _drop_old_slices(folder: str) -> None:
    """Remove the versions of a slice older than the ``KEPT_VERSIONS`` newest: its folder's
    siblings are the earlier versions of the same key (a re-run or backfill), named so they
    sort by time; the one just replaced stays for queries still reading it. Only a local
    folder is cleaned (the local session's); on a cluster the catalog's storage keeps them."""
    parsed = urlparse(folder)
    if parsed.scheme not in ("", "file"):
        return
    key_folder = Path(parsed.path).parent
    versions = sorted(child for child in key_folder.iterdir() if child.is_dir() and child.name.startswith("v"))
    for old in versions[:-KEPT_VERSIONS]:
        shutil.rmtree(old, ignore_errors=True)


def _publish_history(wh: Warehouse, t: PublishedTable, version: str) -> None:
    name, key = ident(t.name), ident(t.key)
    stored = f"{STORE_SCHEMA}.{name}"
    source = f"{AUDIT_SCHEMA}.{name}"
    columns = wh.columns(AUDIT_SCHEMA, t.name)
    if not wh.table_exists(STORE_SCHEMA, t.name):
        wh.execute(f"create table {stored} using parquet partitioned by ({key}) as select * from {source} where 1 = 0")
    root = _location(wh, stored).rstrip("/")
    others = ", ".join(ident(c) for c in columns if c != t.key)
    for (value,) in wh.query(f"select distinct {key} from {source}"):
        if value is None:
            raise PublishError(f"{source} has rows without {t.key}: nothing of it was published")
        text = value.isoformat() if isinstance(value, (date, datetime)) else str(value)
        spec = f"{key} = {spark_literal(text)}"
        folder = f"{root}/{t.key}={text}/{version}"
        # the slice's files, all or none, in a folder no reader looks at yet
        wh.execute(f"insert overwrite directory {spark_literal(folder)} using parquet "
                   f"select {others} from {source} where {key} = ?", (value,))
        if wh.query(f"show partitions {stored} partition ({spec})"):
            wh.execute(f"alter table {stored} partition ({spec}) set location {spark_literal(folder)}")
        else:
            wh.execute(f"alter table {stored} add partition ({spec}) location {spark_literal(folder)}")
        _drop_old_slices(folder)
    wh.execute(f"refresh table {stored}")
    if not wh.table_exists(PUBLISHED_SCHEMA, t.name):
        _view(wh, t.name, f"select {', '.join(ident(c) for c in columns)} from {stored}")
