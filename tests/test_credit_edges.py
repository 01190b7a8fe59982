"""Every bin edge of every scorecard indicator, just below, on and just above it: the
dbt unit test ``credit_points_at_every_bin_edge`` (run with the others by
tests/test_dbt_unit.py) is written from the seed by the simple rule a credit officer
reads it with (a value v scores the bin with lower_bound <= v < upper_bound). This test
keeps that unit test equal to what the seed says; after a change to the bins, write it
again with ``uv run python tests/test_credit_edges.py``."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "dbt_project" / "seeds"
UNIT_TEST = ROOT / "dbt_project" / "models" / "intermediate" / "_credit_bin_edges__unit_tests.yml"
STEP = 1e-6


def _bins() -> dict[str, list[tuple[float, float, float]]]:
    order = {r["indicator"]: int(r["indicator_order"]) for r in csv.DictReader(open(SEEDS / "credit_scorecard.csv"))}
    bins: dict[str, list] = {name: [] for name in sorted(order, key=order.get)}
    for row in csv.DictReader(open(SEEDS / "credit_scorecard_bins.csv")):
        bins[row["indicator"]].append((float(row["lower_bound"]), float(row["upper_bound"]), float(row["points"]),
                                       int(row["bin_order"])))
    return {name: [b[:3] for b in sorted(rows, key=lambda b: b[3])] for name, rows in bins.items()}


def _points(bins: list[tuple[float, float, float]], value: float) -> float:
    return next(points for lower, upper, points in bins if lower <= value < upper)


def unit_test() -> dict:
    """The unit test: customer k holds the k-th edge value of every indicator (an
    indicator with fewer edges repeats its last one)."""
    bins = _bins()
    values = {name: [v for lower, _, _ in rows[1:] for v in (round(lower - STEP, 9), lower, round(lower + STEP, 9))]
              for name, rows in bins.items()}
    customers = max(len(v) for v in values.values())
    given, expected = [], []
    for k in range(customers):
        row = {"customer_id": k + 1}
        for name, cases in values.items():
            value = cases[min(k, len(cases) - 1)]
            row[f"ind_{name}"] = value
            expected.append({"customer_id": k + 1, "indicator": name, "points": _points(bins[name], value),
                             "is_fallback": False, "is_beyond_range": False})
        given.append(row)
    return {"unit_tests": [{
        "name": "credit_points_at_every_bin_edge",
        "description": ("Every bin edge of every indicator, 0.000001 below it, on it and 0.000001 above it: "
                        "a lower bound is inside its bin, an upper bound is not. Written from the seeds by "
                        "tests/test_credit_edges.py (lower_bound <= v < upper_bound)."),
        "model": "int_credit_indicator_points",
        "given": [{"input": "ref('credit_scorecard')"}, {"input": "ref('credit_scorecard_bins')"},
                  {"input": "ref('int_credit_indicators')", "rows": given}],
        "expect": {"rows": expected},
    }]}


def test_the_bin_edge_unit_test_says_what_the_seed_says():
    assert yaml.safe_load(UNIT_TEST.read_text())["unit_tests"] == unit_test()["unit_tests"]


def test_the_rule_scores_both_sides_of_an_edge_by_hand():
    # return on assets: bins [.., 0) 0 points, [0, 0.005) 2 points
    bins = _bins()["return_on_assets"]
    assert _points(bins, -0.0000395) == 0 and _points(bins, 0.0) == 2 and _points(bins, 0.004999) == 2
    # net margin: [0.03, 0.08) 4 points, [0.08, 0.15) 6 points
    assert _points(_bins()["net_margin"], 0.079998) == 4 and _points(_bins()["net_margin"], 0.08) == 6


if __name__ == "__main__":
    UNIT_TEST.write_text("# written by tests/test_credit_edges.py from the seeds; do not edit by hand\n"
                         "version: 2\n" + yaml.safe_dump(unit_test(), sort_keys=False, width=120))
    sys.exit(0)
