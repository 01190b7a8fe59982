"""What every demo generator shares: the number of customers, the seeded random numbers
and the end of the horizon. The generators take it and hand each other the facts they
derive (customer traits, order facts) explicitly."""

from __future__ import annotations

import datetime as dt

from crm_pipeline.demo.dates import end_of_day_us
from crm_pipeline.demo.randomness import KeyedRandom


class World:
    """The demo world's size, seed and horizon (the last µs whose rows are generated)."""

    def __init__(self, customers: int, seed: int, horizon: dt.date) -> None:
        if customers < 1:
            raise ValueError("customers must be at least 1")
        self.n_customers = int(customers)
        self.rand = KeyedRandom(int(seed))
        self.horizon_end = end_of_day_us(horizon)
