"""The demo operational source: a deterministic OLTP database that evolves day by day.
``generate_world`` computes every row version of the five contract entities from
(customers, seed) up to a horizon; ``advance_source`` brings a real database there."""

# How it is built:
#
# * Every random number is a pure function of (seed, stream name, entity keys, event
#   index) (see ``randomness``). A customer's 17th candidate order has the same time and
#   amount whatever the horizon, so extending the horizon only appends versions, and a
#   source advanced in many small steps ends byte-identical to one advanced in one step.
#   Nothing reads the wall clock or Python's randomised ``hash``.
# * Processes without a natural end (repeat orders, contact re-verification, quarterly
#   filings) are generated in fixed-size rounds of events until they pass the horizon;
#   rows get their ids by sorting on creation time, so ids of rows created before the
#   horizon never depend on it.
# * The data is good data that exercises the business rules the pipeline's models and
#   gates check: heavy-tailed spend, one-time buyers, prospects, seasonality (Q4 peak,
#   Double 11, Chinese New Year dip), dormant and churned customers, late payers and bad
#   debts, complaint bursts, CUTE contact roles with stale and duplicate contacts,
#   quarterly statements for most enterprises. Bad-data cases are made by the tests.
#
# Conventions: timestamps are naive UTC; money is in the row's own currency for orders
# (``currency``) and in the reporting currency (CNY) for credit limits, complaint
# compensation and financial statements. Complaint severity 1 is minor, 4 is critical.
# Complaint ``resolved_at`` is set exactly while the status is ``resolved``.

from crm_pipeline.demo.dates import ACQUISITION_END, WORLD_START
from crm_pipeline.demo.generate import generate_world
from crm_pipeline.demo.source import (GENERATOR_VERSION, STATE_TABLE, AdvanceResult, advance_source, source_metadata,
                                      source_state)

__all__ = [
    "ACQUISITION_END",
    "AdvanceResult",
    "GENERATOR_VERSION",
    "STATE_TABLE",
    "WORLD_START",
    "advance_source",
    "generate_world",
    "source_metadata",
    "source_state",
]
