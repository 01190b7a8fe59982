"""The demo world's calendar: when it starts, when customers stop arriving, the time units
(every time is int64 microseconds since 1970-01-01, naive UTC) and the seasons that make
some days busier than others."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

#: The first day of the demo world: the go-live of the CRM (first customers created).
WORLD_START = dt.date(2023, 7, 1)
#: The last day a new customer is acquired; orders go on for as long as asked.
ACQUISITION_END = dt.date(2026, 9, 30)

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR = 365.25 * DAY
#: a time that never comes (an event that does not happen)
NEVER = np.iinfo(np.int64).max
_EPOCH = dt.date(1970, 1, 1)

#: Chinese New Year (first day) per year; later years fall back to 1 February.
_CHINESE_NEW_YEAR = {2022: "2022-02-01", 2023: "2023-01-22", 2024: "2024-02-10", 2025: "2025-01-29",
                     2026: "2026-02-17", 2027: "2027-02-06", 2028: "2028-01-26", 2029: "2029-02-13",
                     2030: "2030-02-03", 2031: "2031-01-23", 2032: "2032-02-11", 2033: "2033-01-31",
                     2034: "2034-02-19", 2035: "2035-02-08"}
#: days since 1970-01-01 of Chinese New Year for the years 1970..2199
_CHINESE_NEW_YEAR_DAY = np.array([
    (dt.date.fromisoformat(_CHINESE_NEW_YEAR[y]) if y in _CHINESE_NEW_YEAR else dt.date(y, 2, 1)).toordinal()
    - dt.date(1970, 1, 1).toordinal() for y in range(1970, 2200)])
#: order intensity per month (index 1..12): a Q4 peak, a quiet February
_MONTH_FACTOR = np.array([0, 0.95, 0.85, 1.0, 1.0, 1.0, 1.1, 0.95, 0.95, 1.05, 1.1, 1.3, 1.45])


def as_date(d: Any) -> dt.date:
    """A date from a date, a datetime or an ISO string."""
    if isinstance(d, dt.datetime):
        return d.date()
    if isinstance(d, dt.date):
        return d
    if isinstance(d, str):
        return dt.date.fromisoformat(d)
    raise TypeError(f"expected a date, got {d!r}")


def day_us(d: dt.date) -> int:
    """The start of a day."""
    return (d - _EPOCH).days * DAY


def end_of_day_us(d: dt.date) -> int:
    """The last microsecond of a day."""
    return day_us(d) + DAY - 1


def whole_us(x: np.ndarray) -> np.ndarray:
    """Float microseconds rounded to int64."""
    return np.rint(x).astype(np.int64)


def season(day: np.ndarray, individual: np.ndarray) -> np.ndarray:
    """Relative order intensity on a day: Q4 peak, 618 and Double 11 for consumers,
    a deep dip around Chinese New Year."""
    d = day.astype("datetime64[D]")
    month_start = d.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day_of_month = (d - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    year = d.astype("datetime64[Y]").astype(np.int64) + 1970
    factor = _MONTH_FACTOR[month]
    from_new_year = day - _CHINESE_NEW_YEAR_DAY[np.clip(year - 1970, 0, len(_CHINESE_NEW_YEAR_DAY) - 1)]
    factor = np.where((from_new_year >= -7) & (from_new_year <= 10), factor * 0.35, factor)
    factor = np.where(individual & (month == 11) & (day_of_month >= 9) & (day_of_month <= 11), factor * 2.0, factor)
    factor = np.where(individual & (month == 6) & (day_of_month >= 16) & (day_of_month <= 18), factor * 1.6, factor)
    return factor


def season_max(individual: np.ndarray) -> np.ndarray:
    """The highest value ``season`` takes, for thinning a process at that peak rate."""
    return np.where(individual, 1.3 * 2.0, 1.45)
