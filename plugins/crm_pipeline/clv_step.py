"""The CLV step of the nightly run (filled in by the lifetime-value work)."""

from __future__ import annotations

from datetime import date

from crm_pipeline.warehouse import Warehouse


def run(wh: Warehouse, as_of: date, run_id: str) -> dict:
    return {"status": "not_configured"}
