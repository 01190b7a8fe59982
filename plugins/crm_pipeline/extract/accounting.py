"""Every source row accounted for, every night, after the night's batches:

* **change times the window cannot compare** — a NULL ``updated_at``, a number, or text in
  another format than ``YYYY-MM-DD HH:MM:SS`` — are read beside the window. A time in a
  common format (ISO 8601 with ``T`` or an offset, ``2026/03/05 14:00``,
  ``05.03.2026 14:00``, epoch seconds or milliseconds) is turned into the canonical one
  and the row lands like any other; NULL or text that is no time is a row-rule failure
  (``not_null:updated_at`` or a type failure) in quarantine, once per key and reason;
* **a reconciliation of the last ``CRM_RECONCILE_DAYS`` days**: every (key, change time)
  the source holds in those days, read through its ``updated_at`` index, must be in raw
  or in quarantine. A row the window missed (committed late by a long transaction, or
  written with a time in the past) is read again by its key and lands; what still
  differs after that fails the night with its keys;
* **a full key comparison** every ``CRM_RECONCILE_FULL_EVERY_DAYS``-th night and on
  ``crm reconcile``: a key the source holds that the warehouse has never seen is read and
  lands; a key raw holds alive that the source no longer has was deleted at the source
  and gets a deleted version (``is_deleted`` true), so downstream it looks like a soft delete.

Side batches are recorded in ``ops.extract_batches`` (without a window start, so the
volume rule's median ignores them) and each entity's outcome in ``ops.source_reconciliation``.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from dateutil import parser as dateparser

from crm_pipeline import gates, settings
from crm_pipeline.contract import ENTITIES, Entity
from crm_pipeline.extract.hashing import row_hashes
from crm_pipeline.extract.raw_store import WAITING, BatchRejected, ensure_tables, known_customers_sql
from crm_pipeline.extract.readers import source_engine, ts_text
from crm_pipeline.warehouse import Warehouse, ident

log = logging.getLogger(__name__)

CANONICAL = "%Y-%m-%d %H:%M:%S.%f"
#: text that the window's comparison orders correctly
CANONICAL_PREFIX = r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
EPOCH = re.compile(r"\s*-?\d{9,13}(\.\d+)?\s*")
#: how many keys one ``in (...)`` list of a source query holds
KEYS_PER_QUERY = 500
#: how many keys a failure names
KEYS_SHOWN = 20

RECONCILIATION_DDL = """create table if not exists ops.source_reconciliation (
    run_id varchar, entity varchar, as_of date, full_comparison boolean, days bigint,
    odd_change_times bigint, reread bigint, landed bigint, quarantined bigint, deleted bigint,
    missing bigint, missing_keys varchar, ok boolean, checked_at timestamp)"""


class SourceNotReconciled(BatchRejected):
    """Rows of the source are in neither raw nor quarantine after reading them again."""


@dataclass
class Accounting:
    entity: str
    full_comparison: bool = False
    days: int = 0
    odd_change_times: int = 0  # rows read beside the window
    reread: int = 0            # rows the window missed, read again by key
    landed: int = 0
    quarantined: int = 0
    deleted: int = 0           # hard deletes recorded as deleted versions
    missing_keys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing_keys

    def as_dict(self) -> dict:
        return {"entity": self.entity, "full_comparison": self.full_comparison, "days": self.days,
                "odd_change_times": self.odd_change_times, "reread": self.reread, "landed": self.landed,
                "quarantined": self.quarantined, "deleted": self.deleted, "missing": len(self.missing_keys),
                "missing_keys": self.missing_keys[:KEYS_SHOWN], "ok": self.ok}

    def describe(self) -> str:
        shown = ", ".join(self.missing_keys[:KEYS_SHOWN]) + (" …" if len(self.missing_keys) > KEYS_SHOWN else "")
        return (f"{self.entity}: {len(self.missing_keys):,} rows of the source are in neither raw nor quarantine "
                f"after reading them again (keys {shown})")


def canonical_change_time(value):
    """A change time in the canonical text (UTC); the value as it was when it is no time
    (gate 1 then quarantines it as not a timestamp); None for NULL."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    try:
        if isinstance(value, (datetime, pd.Timestamp, np.datetime64)):
            moment = pd.Timestamp(value)
        elif isinstance(value, (int, float, np.integer, np.floating)) or (
                isinstance(value, str) and EPOCH.fullmatch(value)):
            number = float(value)
            moment = pd.Timestamp(number, unit="ms" if abs(number) > 1e11 else "s")
        else:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value).strip()
            try:
                moment = pd.Timestamp(pd.to_datetime(text, format="ISO8601"))
            except (ValueError, OverflowError):
                # day first where dots separate the parts (05.03.2026), as written in Europe
                moment = pd.Timestamp(dateparser.parse(text, dayfirst="." in text))
    except (ValueError, OverflowError, TypeError, dateparser.ParserError):
        return value
    if moment.tzinfo is not None:
        moment = moment.tz_convert("UTC").tz_localize(None)
    return moment.strftime(CANONICAL)


def _quote(engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


def _time_is_text(engine, entity: Entity) -> bool:
    if engine.dialect.name == "sqlite":
        return True  # SQLite keeps whatever it is given, whatever the declared type
    for column in sa.inspect(engine).get_columns(entity.name):
        if column["name"] == entity.updated_at:
            return isinstance(column["type"], sa.types.String)
    return False


def _odd_times_where(engine, entity: Entity) -> str:
    """Rows whose change time the window's comparison cannot place."""
    upd = _quote(engine, entity.updated_at)
    where = f"{upd} is null"
    if _time_is_text(engine, entity):
        dialect = engine.dialect.name
        if dialect == "sqlite":
            pattern = re.sub(r"\[0-9\]\{(\d)\}", lambda m: "[0-9]" * int(m.group(1)), CANONICAL_PREFIX)
            where += f" or typeof({upd}) <> 'text' or {upd} not glob '{pattern}*'"
        elif dialect == "postgresql":
            where += f" or {upd} !~ '^{CANONICAL_PREFIX}'"
        else:
            where += f" or {upd} not regexp '^{CANONICAL_PREFIX}'"
    return where


def _read(engine, entity: Entity, where: str, params: dict | None = None) -> pd.DataFrame:
    columns = list(entity.columns)
    sql = f"select {', '.join(_quote(engine, c) for c in columns)} from {_quote(engine, entity.name)} where {where}"
    with engine.connect() as con:
        rows = con.execute(sa.text(sql), params or {}).fetchall()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns, dtype=object)


def _read_keys(engine, entity: Entity, keys: list[str]) -> pd.DataFrame:
    parts = []
    for start in range(0, len(keys), KEYS_PER_QUERY):
        part = [int(k) for k in keys[start:start + KEYS_PER_QUERY] if str(k).lstrip("-").isdigit()]
        if part:
            parts.append(_read(engine, entity, f"{_quote(engine, entity.key)} in ({', '.join(map(str, part))})"))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(entity.columns), dtype=object)


def _night_end(as_of: date) -> datetime:
    return datetime.combine(as_of + timedelta(days=1), datetime.min.time())


def _land(wh: Warehouse, entity: Entity, frame: pd.DataFrame, *, as_of: date, run_id: str, kind: str,
          known_ids: Callable[[], set[int]], gate_settings) -> tuple[int, int]:
    """Rows read beside the window through gate 1 into raw and quarantine, as a side batch;
    a version raw already holds (same key and change time) and a failure quarantine already
    holds (same key and reason) are skipped. Returns (landed, quarantined)."""
    if frame.empty:
        return 0, 0
    upd, end = entity.updated_at, _night_end(as_of)
    frame = frame.copy()
    frame[upd] = frame[upd].map(canonical_change_time).astype(object)
    later = pd.to_datetime(frame[upd], errors="coerce", format=CANONICAL) >= end
    frame = frame[~later.to_numpy()].reset_index(drop=True)  # a change after the night belongs to a later one
    if frame.empty:
        return 0, 0
    ids = known_ids() if entity.name != "customers" and "customer_id" in entity.columns else None
    result = gates.gate1_rows(entity, frame, ids, as_of=as_of, settings=gate_settings)
    good, bad = result.good.copy(), result.quarantined.copy()
    keys = sorted({str(k) for k in frame[entity.key] if k is not None})
    if len(good):
        held = _raw_versions(wh, entity, keys)
        version = list(zip(good[entity.key].astype(str), pd.to_datetime(good[upd]).dt.strftime(CANONICAL)))
        good = good[[v not in held for v in version]]
    if len(bad):
        held_q = {(str(k), r) for k, r in wh.query(
            f"select _key, _reason from quarantine.{ident(entity.name)}")} if keys else set()
        bad = bad[[(str(k), r) not in held_q for k, r in zip(bad["_key"], bad["_reason"])]]
    if not len(good) and not len(bad):
        return 0, 0
    batch_id = f"{entity.name}-{as_of.isoformat()}-{kind}-{uuid.uuid4().hex[:8]}"
    loaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
    columns = list(entity.columns)
    if len(good):
        good = good[columns].copy()
        good["_row_hash"] = row_hashes(good, columns, entity.columns).to_numpy()
        good["_batch_id"], good["_as_of"], good["_visible_from"] = batch_id, as_of, as_of
        good["_window_end"], good["_loaded_at"] = end, loaded_at
    if len(bad):
        bad = bad[["_key", "_rule", "_reason", "_record"]].copy()
        bad["_batch_id"], bad["_as_of"], bad["_loaded_at"], bad["_state"] = batch_id, as_of, loaded_at, WAITING
    with wh.transaction():
        wh.append_df("raw", entity.name, good.reset_index(drop=True))
        wh.append_df("quarantine", entity.name, bad.reset_index(drop=True))
        wh.execute("insert into ops.extract_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, batch_id, entity.name, as_of, None, end, False, len(good) + len(bad), 0, len(good),
                    len(bad), 0.0, loaded_at))
    log.info("%s: %d rows read beside the window (%s) landed, %d quarantined", entity.name, len(good), kind, len(bad))
    return len(good), len(bad)


def _raw_versions(wh: Warehouse, entity: Entity, keys: list[str]) -> set[tuple[str, str]]:
    held: set[tuple[str, str]] = set()
    numbers = [int(k) for k in keys if k.lstrip("-").isdigit()]
    for start in range(0, len(numbers), KEYS_PER_QUERY):
        part = numbers[start:start + KEYS_PER_QUERY]
        for key, moment in wh.query(
                f"select {ident(entity.key)}, {ident(entity.updated_at)} from raw.{ident(entity.name)} "
                f"where {ident(entity.key)} in ({', '.join('?' for _ in part)})", part):
            held.add((str(key), pd.Timestamp(moment).strftime(CANONICAL)))
    return held


def _missing_in_days(wh: Warehouse, engine, entity: Entity, lo: datetime, hi: datetime) -> list[str]:
    """Keys whose source version changed in [lo, hi) is in neither raw nor quarantine."""
    upd, key = _quote(engine, entity.updated_at), _quote(engine, entity.key)
    bound = ts_text if engine.dialect.name == "sqlite" else (lambda moment: moment)
    with engine.connect() as con:
        source = con.execute(sa.text(f"select {key}, {upd} from {_quote(engine, entity.name)} "
                                     f"where {upd} >= :lo and {upd} < :hi"),
                             {"lo": bound(lo), "hi": bound(hi)}).fetchall()
    if not source:
        return []
    # a day wider on each side: a source that compares in another time zone than UTC
    # returns rows a few hours beyond the bounds, and raw holds them in UTC
    held = {(str(k), pd.Timestamp(t).strftime(CANONICAL)) for k, t in wh.query(
        f"select {ident(entity.key)}, {ident(entity.updated_at)} from raw.{ident(entity.name)} "
        f"where {ident(entity.updated_at)} >= ? and {ident(entity.updated_at)} < ?",
        (lo - timedelta(days=1), hi + timedelta(days=1)))}
    for k, record in wh.query(f"select _key, _record from quarantine.{ident(entity.name)}"):
        moment = canonical_change_time(_record_time(record, entity))
        if moment is not None:
            held.add((str(k), str(moment)))
    return sorted({str(k) for k, t in source if (str(k), canonical_change_time(t)) not in held}, key=_key_order)


def _record_time(record: str | None, entity: Entity):
    match = re.search(rf'"{re.escape(entity.updated_at)}":\s*("(?:[^"\\]|\\.)*"|[-0-9.eE]+|null)', record or "")
    if not match or match.group(1) == "null":
        return None
    value = match.group(1)
    return value[1:-1] if value.startswith('"') else value


def _key_order(key: str):
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)


def _hard_deletes(wh: Warehouse, engine, entity: Entity, *, as_of: date, run_id: str) -> tuple[int, list[str]]:
    """Compare every key: keys raw holds alive that the source lost get a deleted version;
    returns (how many, the keys the source holds that the warehouse never saw)."""
    with engine.connect() as con:
        source = {str(k) for (k,) in con.execute(sa.text(
            f"select {_quote(engine, entity.key)} from {_quote(engine, entity.name)}")).fetchall()}
    key, upd = ident(entity.key), ident(entity.updated_at)
    newest = f"(select r.*, row_number() over (partition by {key} order by {upd} desc, _loaded_at desc) " \
             f"as _rank from raw.{ident(entity.name)} r) newest where _rank = 1"
    deleted = "coalesce(is_deleted, false)" if entity.soft_delete else "false"
    latest = wh.query(f"select {key}, {deleted} from {newest}")
    quarantined = {str(k) for (k,) in wh.query(f"select distinct _key from quarantine.{ident(entity.name)}")}
    seen = {str(k) for k, _ in latest} | quarantined
    unseen = sorted(source - seen, key=_key_order)
    vanished = [int(k) for k, is_deleted in latest if not is_deleted and str(k) not in source] \
        if entity.soft_delete else []
    if not vanished:
        return 0, unseen
    parts = [wh.query_df(f"select * from {newest} and {key} in ({', '.join(map(str, vanished[i:i + KEYS_PER_QUERY]))})")
             for i in range(0, len(vanished), KEYS_PER_QUERY)]
    gone = pd.concat(parts, ignore_index=True).drop(columns=["_rank"])
    end = _night_end(as_of)
    batch_id = f"{entity.name}-{as_of.isoformat()}-deleted-{uuid.uuid4().hex[:8]}"
    loaded_at = datetime.now(timezone.utc).replace(tzinfo=None)
    gone["is_deleted"] = True
    gone[entity.updated_at] = end - timedelta(microseconds=1)  # known by the end of the night
    columns = list(entity.columns)
    gone["_row_hash"] = row_hashes(gone[columns], columns, entity.columns).to_numpy()
    gone["_batch_id"], gone["_as_of"], gone["_visible_from"] = batch_id, as_of, as_of
    gone["_window_start"], gone["_window_end"], gone["_loaded_at"] = None, end, loaded_at
    with wh.transaction():
        wh.append_df("raw", entity.name, gone.reset_index(drop=True))
        wh.execute("insert into ops.extract_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, batch_id, entity.name, as_of, None, end, False, len(gone), 0, len(gone), 0, 0.0,
                    loaded_at))
    log.info("%s: %d rows deleted at the source recorded as deleted versions", entity.name, len(gone))
    return len(gone), unseen


def account_for_source(wh: Warehouse, source_url: str, *, as_of: date, run_id: str, gate_settings=None,
                       full: bool | None = None) -> list[Accounting]:
    """The night's accounting of every entity (customers first); recorded in
    ``ops.source_reconciliation``. ``full`` None: on the configured schedule."""
    ensure_tables(wh)
    wh.execute(RECONCILIATION_DDL)
    days, every = settings.reconcile_days(), settings.reconcile_full_every_days()
    if full is None:
        full = every > 0 and as_of.toordinal() % every == 0
    end = _night_end(as_of)

    def known_ids() -> set[int]:
        return {int(row[0]) for row in wh.query(known_customers_sql("?"), (end,))}

    engine = source_engine(source_url)
    out: list[Accounting] = []
    try:
        for entity in sorted(ENTITIES, key=lambda e: e.name != "customers"):
            acc = Accounting(entity.name, full_comparison=full, days=days)
            odd = _read(engine, entity, _odd_times_where(engine, entity))
            acc.odd_change_times = len(odd)
            landed = _land(wh, entity, odd, as_of=as_of, run_id=run_id, kind="changetimes", known_ids=known_ids,
                           gate_settings=gate_settings)
            missing: list[str] = []
            if days > 0:
                lo = end - timedelta(days=days)
                missing = _missing_in_days(wh, engine, entity, lo, end)
            unseen: list[str] = []
            if full:
                acc.deleted, unseen = _hard_deletes(wh, engine, entity, as_of=as_of, run_id=run_id)
            again = sorted(set(missing) | set(unseen), key=_key_order)
            acc.reread = len(again)
            reread = _land(wh, entity, _read_keys(engine, entity, again), as_of=as_of, run_id=run_id,
                           kind="reread", known_ids=known_ids, gate_settings=gate_settings)
            acc.landed, acc.quarantined = landed[0] + reread[0], landed[1] + reread[1]
            if missing:
                acc.missing_keys = [k for k in _missing_in_days(wh, engine, entity, end - timedelta(days=days), end)]
            out.append(acc)
            _record(wh, run_id, as_of, acc)
    finally:
        engine.dispose()
    return out


def _record(wh: Warehouse, run_id: str, as_of: date, acc: Accounting) -> None:
    with wh.transaction():
        wh.execute("delete from ops.source_reconciliation where run_id = ? and entity = ?", (run_id, acc.entity))
        wh.execute("insert into ops.source_reconciliation values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, acc.entity, as_of, acc.full_comparison, acc.days, acc.odd_change_times, acc.reread,
                    acc.landed, acc.quarantined, acc.deleted, len(acc.missing_keys),
                    ", ".join(acc.missing_keys[:KEYS_SHOWN]), acc.ok, datetime.now(timezone.utc).replace(tzinfo=None)))


def require_reconciled(accounts: list[Accounting]) -> None:
    broken = [acc for acc in accounts if not acc.ok]
    if broken:
        raise SourceNotReconciled("source reconciliation: " + "; ".join(acc.describe() for acc in broken)
                                  + " (ops.source_reconciliation)")
