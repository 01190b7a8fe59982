"""The chunked path: a batch read from the source in chunks by one reader, each chunk
deduplicated, checked by gate 1 and committed to the batch's landing tables, and the
batch then published to ``raw`` at once."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from crm_pipeline import gates
from crm_pipeline.contract import Entity
from crm_pipeline.extract.hashing import join_columns, key_text, row_hashes
from crm_pipeline.extract.raw_store import (
    WAITING,
    BatchStats,
    commit_batch,
    existing_versions,
    fault_point,
    open_batch,
)
from crm_pipeline.extract.readers import iter_source_chunks
from crm_pipeline.warehouse import Warehouse


def extract_batch(wh: Warehouse, engine, entity: Entity, reader: str, *, as_of: date, run_id: str,
                  overlap: timedelta, chunk_rows: int, customer_ids, columns: list[str],
                  gate_settings, on_progress) -> BatchStats:
    """Read, check and land the batch chunk by chunk, then publish it to ``raw`` at once.

    Every chunk is written to the batch's landing tables and committed straight away, so
    neither the process nor the warehouse holds more than a chunk of uncommitted rows
    (memory stays flat however large the table). The landing tables move into
    ``raw``/``quarantine`` in one transaction together with the batch's row in
    ``ops.extract_batches``: a batch is complete in ``raw`` or absent, and a retry after a
    failure drops the landing tables and starts again."""
    started = time.perf_counter()
    with open_batch(wh, entity, reader, as_of=as_of, overlap=overlap,
                    gate_settings=gate_settings) as (stats, landing, loaded_at, _):
        _land_chunks(wh, engine, entity, reader, stats, landing=landing, loaded_at=loaded_at,
                     chunk_rows=chunk_rows, customer_ids=customer_ids, gate_settings=gate_settings,
                     on_progress=on_progress)
        commit_batch(wh, entity, stats, landing=landing, run_id=run_id, columns=columns,
                     loaded_at=loaded_at, gate_settings=gate_settings, started=started)
    return stats


def _land_chunks(wh: Warehouse, engine, entity: Entity, reader: str, stats: BatchStats, *, landing: str,
                 loaded_at: datetime, chunk_rows: int, customer_ids, gate_settings, on_progress) -> None:
    contract_cols = list(entity.columns)
    seen = existing_versions(wh, entity, stats.window_start, stats.window_end)
    previous = pd.Index([], dtype=object)  # versions of the last chunk (in-batch repeats are adjacent)
    first_chunk = True
    for chunk in iter_source_chunks(engine, entity, stats.window_start, stats.window_end, chunk_rows, reader):
        stats.rows_extracted += len(chunk)
        chunk = chunk[contract_cols]
        hashes = row_hashes(chunk, contract_cols, entity.columns)
        versions = pd.Index(join_columns([key_text(chunk[entity.key]), hashes.to_numpy(dtype=object)], len(chunk)),
                            dtype=object)
        dup = np.asarray(versions.isin(seen) | versions.isin(previous) | versions.duplicated(keep="first"))
        previous = versions
        stats.rows_duplicate += int(dup.sum())
        if not dup.all():
            fresh = chunk[~dup]
            result = gates.gate1_rows(entity, fresh, customer_ids, as_of=stats.as_of, settings=gate_settings,
                                      outlier_limits=stats.outlier_limits)
            good = result.good.copy()
            good["_row_hash"] = hashes[~dup].loc[good.index].to_numpy()
            bad = result.quarantined
            stats.rows_staged += len(good)
            stats.rows_quarantined += len(bad)
            for rule, count in bad["_rule"].value_counts().items() if len(bad) else ():
                stats.quarantine_rules[rule] = stats.quarantine_rules.get(rule, 0) + int(count)
            write_chunk(wh, entity, good, bad, landing=landing, batch_id=stats.batch_id, as_of=stats.as_of,
                        is_initial=stats.is_initial, window_start=stats.window_start,
                        window_end=stats.window_end, loaded_at=loaded_at)
        if first_chunk:
            first_chunk = False
            fault_point("after_first_chunk", entity)
        if on_progress:
            on_progress(len(chunk))


def write_chunk(wh: Warehouse, entity: Entity, good: pd.DataFrame, bad: pd.DataFrame, *, landing: str,
                batch_id: str, as_of: date, is_initial: bool, window_start, window_end,
                loaded_at: datetime) -> None:
    """One chunk into the landing tables, committed on its own."""
    if len(good):
        good["_batch_id"] = batch_id
        good["_as_of"] = as_of
        if is_initial:
            good["_visible_from"] = pd.to_datetime(good[entity.updated_at]).dt.date
        else:
            good["_visible_from"] = as_of
        good["_window_start"] = window_start
        good["_window_end"] = window_end
        good["_loaded_at"] = loaded_at
        wh.append_df("raw", landing, good)
    if len(bad):
        bad = bad[["_key", "_rule", "_reason", "_record"]].copy()
        bad["_batch_id"] = batch_id
        bad["_as_of"] = as_of
        bad["_loaded_at"] = loaded_at
        bad["_state"] = WAITING
        wh.append_df("quarantine", landing, bad)
