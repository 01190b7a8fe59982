"""What the night's summary says about the credit desk's marts, read from ``audit`` at
gate 2: the grade quarter, how many customers were graded and how many of them from
reconstructed first-night data, the scorecard measures whose stability index is not
stable, and whether the latest quarter that is over ranked its bad payers in grade order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from crm_pipeline.warehouse import Warehouse


def credit_facts(wh: "Warehouse", schema: str = "audit") -> dict[str, Any]:
    """The facts, or {} when the night built no credit grades."""
    if not wh.table_exists(schema, "customer_credit_grades"):
        return {}
    row = wh.query(f"select min(grade_quarter), count(*), "
                   f"sum(case when is_reconstructed then 1 else 0 end) from {schema}.customer_credit_grades")[0]
    if not row[1]:
        return {}
    facts: dict[str, Any] = {"grade_quarter": str(row[0]), "graded": int(row[1]), "reconstructed": int(row[2] or 0)}
    if wh.table_exists(schema, "credit_scorecard_stability"):
        facts["unstable"] = [
            {"measure": m, "psi": float(psi), "status": status, "previous_grade_quarter": str(prev)}
            for m, psi, status, prev in wh.query(
                f"select measure, max(psi), max(status), max(previous_grade_quarter) "
                f"from {schema}.credit_scorecard_stability where status <> 'stable' "
                f"group by measure order by max(psi) desc, measure")
        ]
    if wh.table_exists(schema, "credit_grade_outcomes"):
        latest = wh.query(f"select grade_quarter, bool_and(ranks_in_grade_order) from {schema}.credit_grade_outcomes "
                          f"group by grade_quarter order by grade_quarter desc limit 1")
        if latest:
            facts["outcomes"] = {"grade_quarter": str(latest[0][0]), "ranks_in_grade_order": bool(latest[0][1])}
    return facts


def describe(facts: dict[str, Any]) -> list[str]:
    """The summary's lines about the credit grades (none when nothing is worth saying)."""
    lines: list[str] = []
    if facts.get("reconstructed"):
        lines.append(f"credit grades for the quarter from {facts['grade_quarter']}: {facts['reconstructed']:,} of "
                     f"{facts['graded']:,} customers graded partly from reconstructed data (the warehouse's history "
                     "starts after the cut-off; reconstructed_indicators names the indicators)")
    for m in facts.get("unstable") or []:
        lines.append(f"scorecard stability: {m['measure']} PSI {m['psi']:.3f} ({m['status']}) against "
                     f"{m['previous_grade_quarter']}")
    outcomes = facts.get("outcomes")
    if outcomes and not outcomes["ranks_in_grade_order"]:
        lines.append(f"credit outcomes: the bad rates of the quarter from {outcomes['grade_quarter']} do not rank "
                     "in grade order (see credit_grade_outcomes)")
    return lines
