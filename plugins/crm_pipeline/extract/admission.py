"""Quarantine is a waiting room: the state of every quarantined row and the decisions on it.

A row gate 1 quarantines starts ``waiting``. During a night's extract stage, after every
entity's batch (customers first), ``admit_waiting`` goes through the waiting rows:

* a row of which raw now holds a version as new or newer (the row was fixed at the source
  and came back through the night's window) becomes ``superseded``;
* a row quarantined under the parent rule only (its customer was unknown or itself
  quarantined) whose customer is known now is checked again with every row rule and, when
  it passes, lands in raw as a new batch and becomes ``admitted`` with that batch id;
* a row an analyst admitted (``crm quarantine admit``) lands the same way once its
  customer is known; the analyst's decision stands for the other rules.

``decide`` records an analyst's admission or rejection (who, when, why);
``state_counts`` counts the rows per state for the run record and the summary."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from crm_pipeline import gates
from crm_pipeline.contract import ENTITIES, ENTITY_BY_NAME, Entity
from crm_pipeline.extract.hashing import row_hashes
from crm_pipeline.extract.raw_store import WAITING, ensure_tables, known_customers_sql
from crm_pipeline.gates.coercion import coerce_batch
from crm_pipeline.warehouse import Warehouse, ident

ADMITTED, REJECTED, SUPERSEDED = "admitted", "rejected", "superseded"
STATES = (WAITING, ADMITTED, REJECTED, SUPERSEDED)
#: the row rule that names the parent (``expectations/raw_<entity>.json``): a row
#: quarantined under it alone waits for its customer
PARENT_RULE = "fk:customer_id"
PARENT_COLUMN = "customer_id"
#: who made the decisions the pipeline makes by itself
PIPELINE = "crm pipeline"


class DecisionRefused(ValueError):
    """An analyst's decision that cannot be recorded (no such row, or a row that cannot be
    admitted); the message is one line."""


@dataclass
class Landed:
    """What one night's admission did for one entity."""

    entity: str
    batch_id: str | None = None
    admitted: int = 0  # rows admitted by the pipeline (their customer arrived)
    by_analyst: int = 0  # rows an analyst admitted that landed tonight
    superseded: int = 0
    keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"batch_id": self.batch_id, "admitted": self.admitted, "by_analyst": self.by_analyst,
                "superseded": self.superseded}


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _records(entity: Entity, rows: list[tuple]) -> pd.DataFrame:
    """The original values of quarantined rows (their ``_record``) as a frame of the
    contract's columns, in the order of ``rows``."""
    records = [json.loads(row[3]) if row[3] else {} for row in rows]
    return pd.DataFrame([{column: record.get(column) for column in entity.columns} for record in records],
                        columns=list(entity.columns), dtype=object)


def _pending(wh: Warehouse, entity: Entity) -> list[tuple]:
    """Waiting rows and admitted rows not yet in raw: (_batch_id, _key, _rule, _record, _state)."""
    return wh.query(
        f"select _batch_id, _key, _rule, _record, _state from quarantine.{ident(entity.name)} "
        f"where _state = ? or (_state = ? and _admitted_batch_id is null)", (WAITING, ADMITTED))


def _newest_in_raw(wh: Warehouse, entity: Entity, keys: list[str]) -> dict[str, pd.Timestamp]:
    """The newest ``updated_at`` raw holds per key (keys that are whole numbers only)."""
    ints = sorted({int(key) for key in keys if key is not None and key.lstrip("-").isdigit()})
    out: dict[str, pd.Timestamp] = {}
    for start in range(0, len(ints), 500):
        part = ints[start:start + 500]
        marks = ", ".join("?" for _ in part)
        for key, newest in wh.query(
                f"select {ident(entity.key)}, max({ident(entity.updated_at)}) from raw.{ident(entity.name)} "
                f"where {ident(entity.key)} in ({marks}) group by {ident(entity.key)}", part):
            out[str(key)] = pd.Timestamp(newest)
    return out


def _known(wh: Warehouse, as_of: date) -> set[int]:
    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    return {int(row[0]) for row in wh.query(known_customers_sql("?"), (end,))}


def _set_state(wh: Warehouse, entity: Entity, row: tuple, state: str, *, reason: str | None, by: str | None,
               at: datetime, batch_id: str | None = None, keep_decision: bool = False) -> None:
    """One quarantined row (found by its batch, key and record) to ``state``; with
    ``keep_decision`` an analyst's who/when/why stay and only the batch id is set."""
    decided = ("_decided_at = coalesce(_decided_at, ?), _decided_by = coalesce(_decided_by, ?), "
               "_decision_reason = coalesce(_decision_reason, ?)") if keep_decision else \
        "_decided_at = ?, _decided_by = ?, _decision_reason = ?"
    wh.execute(
        f"update quarantine.{ident(entity.name)} set _state = ?, {decided}, _admitted_batch_id = ? "
        f"where _batch_id = ? and _key = ? and _record = ? and (_state = ? or _state = ?)",
        (state, at, by, reason, batch_id, row[0], row[1], row[3], WAITING, ADMITTED))


def _typed_as_is(entity: Entity, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows typed to the contract without the value rules (an analyst's admission stands
    for them) and which of them have a value that is not of its type."""
    typed, bad, _ = coerce_batch(entity, frame)
    unparsable = np.zeros(len(frame), dtype=bool)
    for flags in bad.values():
        unparsable |= np.asarray(flags, dtype=bool)
    for column, logical in entity.columns.items():
        if logical == "bool" and not typed[column].isna().any():
            typed[column] = typed[column].astype(bool)
    return typed, unparsable


def admit_waiting(wh: Warehouse, *, as_of: date, run_id: str, gate_settings=None) -> dict[str, Landed]:
    """The night's decisions on the waiting rooms of every entity (see the module's
    docstring); each entity's landed rows and state changes commit in one transaction."""
    ensure_tables(wh)
    known = _known(wh, as_of)
    return {entity.name: _admit_entity(wh, entity, as_of=as_of, run_id=run_id, known=known,
                                       gate_settings=gate_settings) for entity in ENTITIES}


def _admit_entity(wh: Warehouse, entity: Entity, *, as_of: date, run_id: str, known: set[int],
                  gate_settings) -> Landed:
    landed = Landed(entity.name)
    rows = _pending(wh, entity)
    if not rows:
        return landed
    frame = _records(entity, rows)
    at = _now()
    newest = _newest_in_raw(wh, entity, [row[1] for row in rows])
    changed = pd.to_datetime(frame[entity.updated_at], errors="coerce")
    superseded = np.array([row[1] in newest and not pd.isna(changed.iloc[i]) and newest[row[1]] >= changed.iloc[i]
                           for i, row in enumerate(rows)], dtype=bool)
    parent = entity.columns.get(PARENT_COLUMN) is not None and entity.name != "customers"
    # the pipeline's candidates: waiting under the parent rule alone, not superseded
    auto = np.array([row[4] == WAITING and row[2] == PARENT_RULE for row in rows], dtype=bool) & ~superseded
    analyst = np.array([row[4] == ADMITTED for row in rows], dtype=bool) & ~superseded
    good_parts: list[pd.DataFrame] = []
    reasons: dict[int, str] = {}
    if auto.any():
        positions = np.flatnonzero(auto)
        result = gates.gate1_rows(entity, frame.iloc[positions].reset_index(drop=True), known, as_of=as_of,
                                  settings=gate_settings)
        good = result.good.copy()
        good.index = positions[good.index.to_numpy()]
        good_parts.append(good[list(entity.columns)])
        for pos in good.index:
            reasons[int(pos)] = (f"{PARENT_COLUMN} {frame[PARENT_COLUMN].iloc[pos]} is known now "
                                 "and the row passes every row rule")
    if analyst.any():
        positions = np.flatnonzero(analyst)
        typed, unparsable = _typed_as_is(entity, frame.iloc[positions].reset_index(drop=True))
        typed.index = positions
        ready = ~unparsable
        if parent:
            ready &= typed[PARENT_COLUMN].isin(list(known)).to_numpy(dtype=bool)
        good_parts.append(typed[ready][list(entity.columns)])
    good = pd.concat(good_parts) if good_parts else pd.DataFrame(columns=list(entity.columns))
    hashes = row_hashes(frame, list(entity.columns), entity.columns) if len(good) else None
    with wh.transaction():
        for pos in np.flatnonzero(superseded):
            _set_state(wh, entity, rows[pos], SUPERSEDED, at=at, by=PIPELINE,
                       reason=f"a version as new or newer (updated_at {newest[rows[pos][1]]}) is in raw")
            landed.superseded += 1
        if len(good):
            landed.batch_id = f"{entity.name}-{as_of.isoformat()}-admitted-{uuid.uuid4().hex[:8]}"
            good = good.copy()
            good["_row_hash"] = hashes.iloc[good.index.to_numpy()].to_numpy()
            key_text = good[entity.key].astype(str).to_numpy()
            first = ~pd.Series(list(zip(key_text, good["_row_hash"]))).duplicated().to_numpy()
            once = good[first].reset_index(drop=True)  # one copy of a version quarantined twice
            once["_batch_id"], once["_as_of"], once["_visible_from"] = landed.batch_id, as_of, as_of
            once["_loaded_at"] = at
            wh.append_df("raw", entity.name, once)
            for pos in good.index:
                if pos in reasons:
                    _set_state(wh, entity, rows[pos], ADMITTED, at=at, by=PIPELINE, reason=reasons[pos],
                               batch_id=landed.batch_id)
                    landed.admitted += 1
                else:
                    _set_state(wh, entity, rows[pos], ADMITTED, at=at, by=PIPELINE, reason=None,
                               batch_id=landed.batch_id, keep_decision=True)
                    landed.by_analyst += 1
                landed.keys.append(rows[pos][1])
    return landed


def state_counts(wh: Warehouse) -> dict[str, dict[str, int]]:
    """Rows per state of every entity's quarantine table (every state, zeros included)."""
    out: dict[str, dict[str, int]] = {}
    for entity in ENTITIES:
        counts = dict.fromkeys(STATES, 0)
        if wh.table_exists("quarantine", entity.name):
            for state, count in wh.query(f"select coalesce(_state, ?), count(*) from quarantine.{ident(entity.name)} "
                                         "group by 1", (WAITING,)):
                counts[state] = counts.get(state, 0) + int(count)
        out[entity.name] = counts
    return out


def decide(wh: Warehouse, entity_name: str, keys: list[str], state: str, *, reason: str, by: str,
           force: bool = False, as_of: date | None = None) -> int:
    """An analyst admits or rejects the waiting rows of ``keys``; returns how many rows.

    Admitting checks the rows again with every row rule except the parent rule (an
    admitted row lands once its customer is known); a row that still breaks a rule is
    refused unless ``force`` (the analyst takes responsibility for the value rules). A
    row with a value that is not of its type can never be admitted."""
    entity = ENTITY_BY_NAME.get(entity_name)
    if entity is None:
        raise DecisionRefused(f"no entity {entity_name!r}; one of {', '.join(e.name for e in ENTITIES)}")
    if state not in (ADMITTED, REJECTED):
        raise DecisionRefused(f"a decision is {ADMITTED} or {REJECTED}, not {state!r}")
    if not reason.strip():
        raise DecisionRefused("a decision needs a reason (--reason)")
    ensure_tables(wh)
    table = f"quarantine.{ident(entity.name)}"
    rows: list[tuple] = []
    for key in keys:
        found = wh.query(f"select _batch_id, _key, _rule, _record, _state from {table} where _key = ? and _state = ?",
                         (str(key), WAITING))
        if not found:
            raise DecisionRefused(f"no waiting row of {entity.name} {key} in {table}")
        rows.extend(found)
    if state == ADMITTED:
        _check_admissible(entity, rows, force=force, as_of=as_of or _now().date())
    at = _now()
    with wh.transaction():
        for row in rows:
            _set_state(wh, entity, row, state, reason=reason.strip(), by=by, at=at)
    return len(rows)


def _check_admissible(entity: Entity, rows: list[tuple], *, force: bool, as_of: date) -> None:
    frame = _records(entity, rows)
    _, unparsable = _typed_as_is(entity, frame)
    if unparsable.any():
        row = rows[int(np.flatnonzero(unparsable)[0])]
        raise DecisionRefused(f"{entity.name} {row[1]} cannot be admitted: a value is not of its type ({row[2]}); "
                              "fix it at the source")
    if force:
        return
    result = gates.gate1_rows(entity, frame, None, as_of=as_of)  # no customer ids: the parent rule is skipped
    if len(result.quarantined):
        first = result.quarantined.iloc[0]
        raise DecisionRefused(f"{entity.name} {first['_key']} still breaks {first['_reason']}; fix it at the "
                              "source, or pass --force to admit it as it is")


def list_rows(wh: Warehouse, *, entity: str | None = None, state: str | None = None, reason: str | None = None,
              limit: int = 50) -> list[dict]:
    """Quarantined rows, newest first, filtered by entity, state and a piece of the rule or reason."""
    ensure_tables(wh)
    out: list[dict] = []
    names = [entity] if entity else [e.name for e in ENTITIES]
    for name in names:
        if name not in ENTITY_BY_NAME:
            raise DecisionRefused(f"no entity {name!r}; one of {', '.join(e.name for e in ENTITIES)}")
        sql = (f"select _key, _state, _rule, _reason, _as_of, _batch_id, _decided_by, _decided_at, _decision_reason, "
               f"_admitted_batch_id from quarantine.{ident(name)} where 1 = 1")
        params: list = []
        if state:
            sql += " and _state = ?"
            params.append(state)
        if reason:
            sql += " and (lower(_rule) like ? or lower(_reason) like ?)"
            params += [f"%{reason.lower()}%"] * 2
        sql += " order by _loaded_at desc, _key limit ?"
        for row in wh.query(sql, [*params, limit]):
            out.append({"entity": name, **dict(zip(("key", "state", "rule", "reason", "as_of", "batch_id",
                                                     "decided_by", "decided_at", "decision_reason",
                                                     "admitted_batch_id"), row))})
    return out[:limit] if entity else sorted(out, key=lambda r: (r["entity"], str(r["key"])))[:limit]
