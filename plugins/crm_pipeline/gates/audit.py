"""Gate 2: the dbt-built ``audit`` marts checked before publish with ``audit_marts.json``.
This module reads each mart (only the columns its checks name) and the audit schema's
column names, runs the datasets in GX, compares the key figures with the last published
date (``key_figures``) and words each failure as one sentence."""

from __future__ import annotations

import json
import re
import string
import warnings
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from crm_pipeline.contract import ENTITIES
from crm_pipeline.errors import first_line
from crm_pipeline.gates.audit_datasets import Dataset, derived_dataset
from crm_pipeline.gates.audit_gx import run_gate2_gx
from crm_pipeline.gates.audit_inputs import Seeds, gate2_params, read_frame, seed_references, substitute
from crm_pipeline.gates.coercion import jsonable
from crm_pipeline.gates.gx_runtime import result_error
from crm_pipeline.gates.key_figures import key_figure_verdicts
from crm_pipeline.gates.results import MESSAGE_CHARS, Gate2Result, GateError, GateSettings
from crm_pipeline.gates.suites import load_suite_file
from crm_pipeline.warehouse import ident

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.warehouse import Warehouse

#: derived checks that read only their ``column`` (with its default) from the mart's frame
_DERIVED_FRAME_COLUMN = {"tier_sizes": "value_tier", "mix_vs_published": "segment", "volume_vs_published": None,
                         "coverage": None}


def gate2_audit(
    wh: "Warehouse",
    *,
    as_of: date,
    docs_dir: Path,
    settings: GateSettings | None = None,
    expected_customers: int | None = None,
) -> Gate2Result:
    """Validate the dbt-built audit marts before publish; build Data Docs into ``docs_dir``.

    Failures are sentences; errors that stop the gate itself (unreadable warehouse, bad
    suite file, missing seed, GX internal error) raise ``GateError`` with a one-line
    message."""
    try:
        return _gate2_audit(wh, as_of=as_of, docs_dir=docs_dir, settings=settings,
                            expected_customers=expected_customers)
    except GateError:
        raise
    except Exception as exc:
        raise GateError(f"gate 2 could not run: {type(exc).__name__}: {first_line(exc, MESSAGE_CHARS)}") from None


def _gate2_audit(wh, *, as_of, docs_dir, settings, expected_customers) -> Gate2Result:
    settings = settings or GateSettings()
    spec = load_suite_file("audit_marts")
    schema = spec.get("schema", "audit")
    failures: list[str] = []
    checks: list[dict] = []

    try:
        existing = set(wh.tables(schema))
    except Exception as exc:
        raise GateError(f"gate 2 cannot list the tables of schema {schema}: {first_line(exc, MESSAGE_CHARS)}") from None

    seeds = Seeds(wh, spec.get("seed_schema", "config"))
    for reference in seed_references(spec):  # a missing seed or column stops the gate here
        seeds.resolve(reference)
    params = gate2_params(wh, spec, settings, seeds, expected_customers, failures)
    datasets = _mart_datasets(wh, spec, schema, existing, params, failures, checks)
    if spec.get("personal_data"):
        datasets.append(_personal_data_dataset(wh, spec["personal_data"], schema))

    resolved: list[Dataset] = []
    for dataset in datasets:
        try:
            expectations = substitute(dataset.expectations, params, seeds)
        except GateError as exc:
            failures.append(f"gate 2 failed: {dataset.name}: {exc}")
            continue
        resolved.append(Dataset(dataset.name, dataset.frame, expectations, dataset.asset))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_gate2_gx(resolved, docs_dir, as_of) if resolved else []
    warnings_ = _verdicts(resolved, results, settings, failures, checks)
    figures = key_figure_verdicts(wh, seeds, as_of=as_of, failures=failures, warnings_=warnings_, checks=checks,
                                  audit_schema=schema)
    docs_path = str(Path(docs_dir) / "index.html") if resolved else None
    return Gate2Result(passed=not failures, failures=failures, checks=checks, docs_path=docs_path, warnings=warnings_,
                       key_figures=figures)


def _mart_datasets(wh: "Warehouse", spec: dict, schema: str, existing: set[str], params: dict,
                   failures: list[str], checks: list[dict]) -> list[Dataset]:
    """Each mart of ``tables`` that exists, with its derived datasets; a missing required
    mart is a failure, a missing optional one a skipped check."""
    datasets: list[Dataset] = []
    for table, tspec in spec.get("tables", {}).items():
        fq = f"{schema}.{table}"
        if table not in existing:
            if tspec.get("required"):
                failures.append(f"gate 2 failed: required table {fq} does not exist")
                checks.append(_check(fq, "table_exists", None, False, 0, [], "required table missing"))
            else:
                checks.append(_check(fq, "table_exists", None, True, 0, [], "skipped: table not built yet"))
            continue
        wanted = _gate2_columns(tspec)
        present = wh.columns(schema, table)
        # only the columns the checks read (a mart can be a million rows by 60 columns); a
        # column the mart lacks stays out, so its expectation errors and fails as before
        columns = present if wanted is None else [c for c in present if c in wanted] or present[:1]
        frame = read_frame(wh, f"select {', '.join(ident(c) for c in columns)} from {ident(schema)}.{ident(table)}", fq)
        datasets.append(Dataset(fq, frame, tspec.get("expectations", []), fq))
        for derived in tspec.get("derived", []):
            dataset = derived_dataset(wh, derived, table, frame, params, schema)
            if dataset is not None:
                datasets.append(dataset)
    return datasets


def _personal_data_dataset(wh: "Warehouse", pii: dict, schema: str) -> Dataset:
    """Every column name of every table in the audit schema, lower-cased, against the
    personal-data regexes plus the source contract's personal columns by exact name."""
    try:  # through the warehouse's catalog calls: Spark has no information_schema
        columns = pd.DataFrame([(table, column) for table in wh.tables(schema) for column in wh.columns(schema, table)],
                               columns=["table_name", "column_name"])
    except Exception as exc:
        raise GateError(f"gate 2 cannot read {schema} columns: {first_line(exc, MESSAGE_CHARS)}") from None
    columns["column_name"] = columns["column_name"].astype(str).str.lower()
    contract_personal = sorted({c.lower() for e in ENTITIES for c in e.personal})
    expectations = json.loads(json.dumps(pii.get("expectations", [])))
    for exp in expectations:
        kw = exp.get("kwargs") or {}
        if "regex_list" in kw:  # the source contract's personal columns, by exact name
            kw["regex_list"] = list(kw["regex_list"]) + [f"^{re.escape(c)}$" for c in contract_personal]
    return Dataset(f"{schema} (all tables) columns", columns, expectations, f"{schema}_personal_data")


def _verdicts(datasets: list[Dataset], results: list[list], settings: GateSettings,
              failures: list[str], checks: list[dict]) -> list[str]:
    """A check per expectation, and a sentence per failed one: a failure, or a warning for
    a soft CLV expectation while ``fail_on_clv`` is off. Returns the warnings."""
    warnings_: list[str] = []
    for dataset, dataset_results in zip(datasets, results):
        for exp, res in zip(dataset.expectations, dataset_results):
            meta = exp.get("meta") or {}
            column = (exp.get("kwargs") or {}).get("column") or (exp.get("kwargs") or {}).get("column_A")
            error = result_error(res)
            # a soft expectation warns: "warn" always, "clv" while fail_on_clv is off
            soft = meta.get("soft") == "warn" or (meta.get("soft") == "clv" and not settings.fail_on_clv)
            result = res.result or {}
            if error:
                where = f"{dataset.name}{'.' + column if column else ''}"
                message = f"gate 2 failed: {exp['type']} on {where} could not be evaluated: {error}"
                ok = False
            elif res.success:
                message, ok = None, True
            else:
                message = "gate 2 failed: " + _describe_failure(exp, dataset.name, column, result, meta)
                ok = False
            checks.append(_check(dataset.name, exp["type"], column, ok, int(result.get("unexpected_count") or 0),
                                 _examples(result, meta), meta.get("description"), error=error, soft=soft))
            if message:
                if soft:
                    warnings_.append(message.replace("gate 2 failed", "gate 2 warning"))
                else:
                    failures.append(message)
    return warnings_


def _gate2_columns(tspec: dict) -> set[str] | None:
    """The columns of a mart its gate 2 checks read (None: all of them): the columns of its
    expectations, their example columns and example formats, and those of its derived
    checks."""
    cols: set[str] = set()
    for exp in tspec.get("expectations", []):
        kw, meta = exp.get("kwargs") or {}, exp.get("meta") or {}
        for k in ("column", "column_A", "column_B", "example_column"):
            v = kw.get(k) if k != "example_column" else meta.get(k)
            if isinstance(v, str):
                cols.add(v)
        for k in ("column_list", "column_set"):
            if isinstance(kw.get(k), list):
                cols.update(v for v in kw[k] if isinstance(v, str))
        if isinstance(meta.get("example_format"), str):
            cols.update(f for _, f, _, _ in string.Formatter().parse(meta["example_format"]) if f)
        if exp.get("type", "").startswith("expect_table_columns"):
            return None
    for derived in tspec.get("derived", []):
        kind = derived.get("kind")
        if kind not in _DERIVED_FRAME_COLUMN:
            return None
        default = _DERIVED_FRAME_COLUMN[kind]
        if default is not None:
            cols.add(derived.get("column", default))
        for exp in derived.get("expectations", []):
            if kind == "volume_vs_published" and (exp.get("kwargs") or {}).get("column"):
                cols.add(exp["kwargs"]["column"])
    return cols


def _check(dataset: str, expectation: str, column: str | None, success: bool, unexpected: int,
           examples: list, description: str | None, *, error: str | None = None, soft: bool = False) -> dict:
    check = {"table": dataset, "expectation": expectation, "column": column, "success": bool(success),
             "unexpected_count": unexpected, "examples": examples}
    if description:
        check["description"] = description
    if error:
        check["error"] = error
    if soft:
        check["soft"] = True
    return check


def _examples(result: dict, meta: dict) -> list:
    idx = result.get("partial_unexpected_index_list") or []
    fmt = meta.get("example_format")
    if fmt and idx and all(isinstance(d, dict) for d in idx):
        try:
            return [fmt.format(**d) for d in idx[:10]]
        except (KeyError, IndexError, ValueError):
            pass
    key = meta.get("example_column")
    if key and idx:
        return [jsonable(d.get(key)) if isinstance(d, dict) else jsonable(d) for d in idx[:10]]
    vals = result.get("partial_unexpected_list") or []
    return [jsonable(v) for v in vals[:10]]


def _describe_failure(exp: dict, dataset: str, column: str | None, result: dict, meta: dict) -> str:
    where = f"{dataset}.{column}" if column else dataset
    etype = exp["type"]
    what = meta.get("description")
    suffix = f" ({what})" if what else ""
    if etype.startswith("expect_table_row_count"):
        kw = exp.get("kwargs") or {}
        expected = kw.get("value")
        if expected is None:
            expected = f"between {kw.get('min_value')} and {kw.get('max_value')}"
        return f"{etype} on {where}: observed {result.get('observed_value')} rows, expected {expected}{suffix}"
    if "unexpected_count" in result:
        examples = _examples(result, meta)
        return f"{etype} on {where}: {result.get('unexpected_count')} unexpected values, e.g. {examples}{suffix}"
    return f"{etype} on {where}: observed {result.get('observed_value')}{suffix}"
