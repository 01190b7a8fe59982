"""Gate 2's run in Great Expectations: each dataset validated through a stored validation
definition in a file context next to the Data Docs, and the docs of this run built: its
validation pages, the pages of suites whose expectations changed, and an index of the
last INDEX_NIGHTS runs; results older than the last KEPT_RUNS runs are removed
(docs/design.md, "Data Docs keep their cost")."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from crm_pipeline.docs_site import localise_data_docs
from crm_pipeline.errors import first_line
from crm_pipeline.gates.audit_datasets import Dataset
from crm_pipeline.gates.gx_runtime import build_suite, gx_lock, import_gx, in_suite_order, no_progress_bars
from crm_pipeline.gates.results import MESSAGE_CHARS, GateError

#: gate runs whose validations the Data Docs index lists
INDEX_NIGHTS = 7
#: gate runs whose results and pages the Data Docs keep (the run record keeps every verdict)
KEPT_RUNS = 90
#: what the suites' pages in a Data Docs folder were rendered from (suite name -> digest)
SUITE_DIGESTS = ".crm-suite-digests.json"


def _suite_digest(expectations: list[dict]) -> str:
    return hashlib.md5(json.dumps(expectations, sort_keys=True, default=str).encode()).hexdigest()


def _suite_page(docs_dir: Path, suite_name: str) -> Path:
    """Where Great Expectations renders a suite's page ("a.b" -> expectations/a/b.html)."""
    *folders, leaf = suite_name.split(".")
    return docs_dir.joinpath("expectations", *folders, f"{leaf}.html")


def _forget_old_runs(context: Any, keys: list) -> int:
    """Remove the stored results of all but the newest KEPT_RUNS gate runs; the next
    Data Docs build removes their pages. Every store listing and every build walks the
    stored runs, so without it a night's gate grew with every night before it."""
    runs = sorted({(k.run_id.run_time, k.run_id.run_name) for k in keys}, reverse=True)
    kept = set(runs[:KEPT_RUNS])
    old = [key for key in keys if (key.run_id.run_time, key.run_id.run_name) not in kept]
    for key in old:
        context.validation_results_store.remove_key(key)
    return len(old)


def _remove_empty_folders(root: Path) -> None:
    """Folders a removed run left empty under ``root`` (Great Expectations keeps them)."""
    if not root.is_dir():
        return
    for folder, _, _ in os.walk(root, topdown=False):  # children first
        if Path(folder) != root and not any(Path(folder).iterdir()):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _rendered_digests(docs_dir: Path) -> dict[str, str]:
    try:
        return dict(json.loads((docs_dir / SUITE_DIGESTS).read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def _asset_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")[:80]


def run_gate2_gx(datasets: list[Dataset], docs_dir: Path, as_of: date) -> list[list]:
    """Validate each dataset with a stored ValidationDefinition and build Data Docs."""
    gx = import_gx()
    docs_dir = Path(docs_dir).resolve()
    root = docs_dir.parent / "gx_context"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with gx_lock:
            context = gx.get_context(mode="file", project_root_dir=str(root))
        context.enable_analytics(False)
        no_progress_bars(context)
        site = "crm_gates"
        # the index lists the validations of the last INDEX_NIGHTS gate runs: Great
        # Expectations reads every result it lists, so an unbounded index cost more each
        # night (docs/design.md, "Data Docs keep their cost"); the pages of the last
        # KEPT_RUNS runs stay
        site_config = {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                   "validation_results_limit": INDEX_NIGHTS * len(datasets)},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        }
        sites = context.list_data_docs_sites() or {}
        if site in sites:
            context.update_data_docs_site(site, site_config)
        else:
            context.add_data_docs_site(site, site_config)
        for other in list(sites):
            if other != site:
                context.delete_data_docs_site(other)
        source_name = "crm_gate2"
        try:
            source = context.data_sources.get(source_name)
        except Exception:
            source = context.data_sources.add_pandas(source_name)
        from great_expectations.core.run_identifier import RunIdentifier  # noqa: PLC0415

        run_id = RunIdentifier(run_name=f"gate2 as_of {as_of.isoformat()}",
                               run_time=datetime.now().astimezone())
        out = []
        # a suite's page is rendered again only when its expectations changed (some carry
        # the night's figures, such as the counts compared with what is published)
        rendered = _rendered_digests(docs_dir)
        suite_names: list[str] = []
        for dataset in datasets:
            asset_name = _asset_name(dataset.asset or dataset.name)
            try:
                asset = source.get_asset(asset_name)
            except LookupError:
                asset = source.add_dataframe_asset(asset_name)
            try:
                batch_definition = asset.get_batch_definition("whole")
            except (KeyError, LookupError, ValueError):
                batch_definition = asset.add_batch_definition_whole_dataframe("whole")
            suite = build_suite(f"audit_marts.{asset_name}", dataset.expectations)
            suite = context.suites.add_or_update(suite)
            digest = _suite_digest(dataset.expectations)
            if rendered.get(suite.name) != digest or not _suite_page(docs_dir, suite.name).exists():
                suite_names.append(suite.name)
                rendered[suite.name] = digest
            definition = gx.ValidationDefinition(name=f"gate2.{asset_name}", data=batch_definition, suite=suite)
            definition = context.validation_definitions.add_or_update(definition)
            fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
            ex_cols = sorted({(e.get("meta") or {}).get("example_column") for e in dataset.expectations} - {None})
            ex_cols = [name for name in ex_cols if name in dataset.frame.columns]
            if ex_cols:
                fmt["unexpected_index_column_names"] = ex_cols
            validation = definition.run(batch_parameters={"dataframe": dataset.frame}, result_format=fmt, run_id=run_id)
            out.append(in_suite_order(validation.results, len(dataset.expectations), f"gate 2 on {dataset.name}"))
        # render only this run's pages (a full rebuild grows with every stored run)
        from great_expectations.data_context.types.resource_identifiers import (  # noqa: PLC0415
            ExpectationSuiteIdentifier,
        )

        keys = [k for k in context.validation_results_store.list_keys() if getattr(k, "run_id", None) is not None]
        mine = [k for k in keys if k.run_id.run_name == run_id.run_name and k.run_id.run_time == run_id.run_time]
        forgotten = _forget_old_runs(context, keys)
        suites = [ExpectationSuiteIdentifier(name=name) for name in suite_names]
        started = time.time() - 1.0  # file times may be coarser than the clock
        context.build_data_docs(site_names=[site], resource_identifiers=mine + suites)
        localise_data_docs(docs_dir, written_since=started)  # shipped assets instead of CDNs
        (docs_dir / SUITE_DIGESTS).write_text(json.dumps(rendered, sort_keys=True))
        if forgotten:
            store = getattr(context.validation_results_store.store_backend, "full_base_directory", None)
            for folder in (Path(store) if store else None, docs_dir / "validations"):
                if folder is not None:
                    _remove_empty_folders(folder)
        return out
    except GateError:
        raise
    except Exception as exc:
        raise GateError(f"gate 2: Great Expectations failed: {first_line(exc, MESSAGE_CHARS)}") from None
