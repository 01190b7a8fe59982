"""Gate 1 on a whole batch: schema drift against the contract, volume collapse or spike
against the recent batches, and too large a share of quarantined rows. A failure refuses
the batch."""

from __future__ import annotations

import statistics

from crm_pipeline.contract import Entity
from crm_pipeline.gates.results import BatchVerdict, GateSettings
from crm_pipeline.gates.rules import plural


def gate1_batch(
    entity: Entity,
    columns: list[str],
    rows: int,
    quarantined: int,
    recent_rows: list[int],
    *,
    settings: GateSettings | None = None,
    incremental: bool = True,
) -> BatchVerdict:
    """Batch-level rules: schema drift, volume collapse or spike, quarantine share."""
    settings = settings or GateSettings()
    failures: list[str] = []
    drift = _schema_drift(entity, list(columns))
    if drift:
        failures.append(drift)
    recent = [int(count) for count in (recent_rows or []) if count is not None]
    if incremental:
        volume = _volume_change(entity, rows, recent, settings.volume_factor)
        if volume:
            failures.append(volume)
    if rows > 0 and quarantined / rows > settings.max_quarantine_share:
        failures.append(
            f"{entity.name}: {quarantined:,} of {rows:,} rows ({quarantined / rows:.0%}) broke row rules, "
            f"above the limit of {settings.max_quarantine_share:.0%}")
    return BatchVerdict(ok=not failures, failures=failures)


def _schema_drift(entity: Entity, columns: list[str]) -> str | None:
    missing = [column for column in entity.columns if column not in columns]
    unexpected = [column for column in columns if column not in entity.columns]
    if not (missing or unexpected):
        return None
    parts = []
    if missing:
        parts.append(plural("missing column", missing))
    if unexpected:
        parts.append(plural("unexpected column", unexpected))
    return f"{entity.name}: schema drift: {', '.join(parts)}"


def _volume_change(entity: Entity, rows: int, recent: list[int], factor: float) -> str | None:
    """A collapse below, or a spike above, the median of the recent batch sizes by more than
    ``factor``; judged only from 3 recent batches with a median of at least 20 rows."""
    if len(recent) < 3 or factor <= 0:
        return None
    median = statistics.median(recent)
    if median < 20:
        return None
    low, high = median / factor, median * factor
    if rows < low:
        return (f"{entity.name}: volume collapse: {rows:,} rows vs a median of {median:,.0f} over the last "
                f"{len(recent)} batches (fewer than {low:,.0f} = median / {factor:g} fails)")
    if rows > high:
        return (f"{entity.name}: volume spike: {rows:,} rows vs a median of {median:,.0f} over the last "
                f"{len(recent)} batches (more than {high:,.0f} = median × {factor:g} fails)")
    return None
