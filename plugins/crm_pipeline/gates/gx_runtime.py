"""The Great Expectations (GX) runtime of both gates: GX imported lazily and quietly, the
ephemeral context that validates gate 1's batches, suites built from expectation dicts, and
each expectation result's error (a metric that raised or a success left undetermined)."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Any

import pandas as pd

from crm_pipeline.errors import first_line
from crm_pipeline.gates.results import MESSAGE_CHARS, GateError

#: held while a GX context is created (the ephemeral one once per process, gate 2's file one)
gx_lock = threading.Lock()
_gx_ephemeral = None


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context",
                 "great_expectations.datasource", "great_expectations.expectations",
                 "great_expectations.validator", "great_expectations.render", "posthog"):
        logging.getLogger(name).setLevel(logging.WARNING)


def import_gx():
    """The ``great_expectations`` module, imported on first use (the import takes seconds
    and logs a lot)."""
    _quiet_gx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx  # noqa: PLC0415 (lazy: ~7 s import)
    _quiet_gx()  # GX may reset levels on import
    return gx


def no_progress_bars(context) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: PLC0415

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)


def _gate1_batch_definition():
    """One ephemeral context per process, with a pandas data source for gate 1 batches."""
    global _gx_ephemeral
    with gx_lock:
        if _gx_ephemeral is None:
            gx = import_gx()
            context = gx.get_context(mode="ephemeral")
            no_progress_bars(context)
            source = context.data_sources.add_pandas("crm_gate1")
            batch_definition = (source.add_dataframe_asset("batch")
                                .add_batch_definition_whole_dataframe("whole_batch"))
            _gx_ephemeral = (context, batch_definition)
        return _gx_ephemeral[1]


def build_suite(name: str, configs: list[dict]):
    """A GX ExpectationSuite from expectation dicts ({type, kwargs, meta})."""
    from great_expectations.core.expectation_suite import ExpectationSuite  # noqa: PLC0415
    from great_expectations.expectations.expectation_configuration import (  # noqa: PLC0415
        ExpectationConfiguration,
    )

    expectations = []
    for ix, config in enumerate(configs):
        try:
            expectations.append(
                ExpectationConfiguration(
                    type=config["type"], kwargs=dict(config.get("kwargs") or {}),
                    meta={**dict(config.get("meta") or {}), "_ix": ix},  # maps results back to the file order
                ).to_domain_obj()
            )
        except Exception as exc:  # a typo in a suite file must say where it is
            raise GateError(f"suite {name}: invalid expectation {config.get('type')!r} "
                            f"{config.get('kwargs')}: {first_line(exc, MESSAGE_CHARS)}") from None
    return ExpectationSuite(name=name, expectations=expectations)


def in_suite_order(results, n: int, what: str) -> list:
    """Results of a suite validation in the order of the suite's expectations."""
    by_ix = {}
    for result in results:
        ix = (result.expectation_config.meta or {}).get("_ix")
        if ix is not None:
            by_ix[int(ix)] = result
    if sorted(by_ix) != list(range(n)):
        raise GateError(f"{what}: Great Expectations returned {len(results)} results for {n} expectations")
    return [by_ix[i] for i in range(n)]


def result_error(res) -> str | None:
    """The error of one expectation result, or None when it evaluated cleanly.

    A raised metric or an undetermined success is an error: a gate must never pass
    because it could not compute something."""
    info = res.exception_info or {}
    messages: list[str] = []
    if isinstance(info, dict):
        if info.get("raised_exception"):
            messages.append(info.get("exception_message") or "metric raised an exception")
        else:
            for sub in info.values():  # {metric_id: {raised_exception, exception_message}}
                if isinstance(sub, dict) and sub.get("raised_exception"):
                    messages.append(sub.get("exception_message") or "metric raised an exception")
    if messages:
        return first_line(Exception(messages[0]), MESSAGE_CHARS)
    if res.success is None:
        return "the expectation returned no success value"
    return None


def validate_gate1_frame(entity_name: str, frame: pd.DataFrame, configs: list[dict], row_column: str) -> list:
    """Gate 1's expectations on one typed batch frame, in suite order, each unexpected row
    named by its ``row_column``."""
    batch_definition = _gate1_batch_definition()
    suite = build_suite(f"raw_{entity_name}", configs)
    result_format: dict[str, Any] = {"result_format": "COMPLETE", "unexpected_index_column_names": [row_column],
                                     "partial_unexpected_count": 5, "return_unique_unexpected": False}
    try:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        validation = batch.validate(suite, result_format=result_format)
    except GateError:
        raise
    except Exception as exc:
        raise GateError(f"{entity_name}: Great Expectations failed while validating the batch: "
                        f"{first_line(exc, MESSAGE_CHARS)}") from None
    return in_suite_order(validation.results, len(configs), entity_name)
