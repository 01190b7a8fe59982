"""What both gates share: the error a gate raises when it cannot run, the thresholds
(``GateSettings``), and the results of gate 1 (rows, batch) and gate 2 (audit marts)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from crm_pipeline.settings import ConfigError, gate_values

#: the most characters of an exception's message that a gate quotes in its own message
MESSAGE_CHARS = 300


class GateError(RuntimeError):
    """A gate could not run (bad suite file, unreadable table, GX internal error)."""


@dataclass
class GateSettings:
    volume_factor: float = 10.0
    max_quarantine_share: float = 0.2
    #: gate 2: customers in the segment table may not drop by more than this vs published
    max_segment_drop_share: float = 0.2
    #: gate 2: any segment's share may not change by more than this (absolute) vs published
    max_segment_mix_shift: float = 0.5
    #: gate 2: CLV expectations (marked ``"soft": "clv"`` in audit_marts.json) fail the gate
    #: only when True; otherwise they are reported as warnings
    fail_on_clv: bool = False
    #: gate 1: an amount above this multiple of the p99 of its column's recent amounts is
    #: quarantined as an outlier (0: no outlier rule)
    outlier_factor: float = 100.0
    #: gate 1: the days of raw history (by updated_at, before the window end) the p99 reads
    outlier_history_days: float = 90.0
    #: gate 1: fewest recent non-zero amounts of a column for it to get a limit at all
    outlier_min_rows: int = 100

    @classmethod
    def from_env(cls) -> "GateSettings":
        """Defaults overridden by the ``CRM_GATE_*`` settings (see ``settings``)."""
        try:
            return cls(**gate_values())
        except ConfigError as exc:
            raise GateError(str(exc)) from None


@dataclass
class Gate1Result:
    #: rows that pass, columns cast to the contract's logical types, original index kept
    good: pd.DataFrame
    #: offending rows (original index kept): ``_key``, ``_rule``, ``_reason``, ``_record``
    quarantined: pd.DataFrame
    #: one per rule: expectation, column, success, unexpected_count, examples (+ rule)
    checks: list[dict] = field(default_factory=list)


@dataclass
class BatchVerdict:
    ok: bool
    failures: list[str] = field(default_factory=list)


@dataclass
class Gate2Result:
    passed: bool
    failures: list[str]
    checks: list[dict]
    docs_path: str | None
    warnings: list[str] = field(default_factory=list)
    #: the key figures against the last published date (``gates.key_figures``), one per figure
    key_figures: list[dict] = field(default_factory=list)
