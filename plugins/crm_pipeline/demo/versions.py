"""Row versions: a creation row per key plus change events become one full row per
version, the way a table that changes rows in place looks to someone who saw every change;
and the conversions from the generators' integer times and cents to the output columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crm_pipeline.demo.dates import DAY

#: numpy's NaT: an int64 µs array views as datetime64
NULL_TS = np.iinfo(np.int64).min
#: in version events: "set this column to NULL"
RESET = -1.0


def _strictly_increasing(keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Nudge equal timestamps within a key (sorted by key, ts) apart by microseconds."""
    pos = pd.Series(keys).groupby(keys, sort=False).cumcount().to_numpy()
    shifted = pd.Series(ts - pos).groupby(keys, sort=False).cummax().to_numpy()
    return shifted + pos


def versions(key: str, base: dict[str, Any], events: list[dict[str, Any]]) -> pd.DataFrame:
    """Row versions from a creation row per key plus change events.

    ``base`` holds every column (``updated_at`` = creation time); each event holds the
    key, ``updated_at`` and the columns it changes (``NaN``/``None`` = unchanged,
    ``RESET`` = set to NULL for float columns). Returns one row per version, sorted by
    key and time, with each version carrying the full row.
    """
    frames = [pd.DataFrame(base)]
    frames += [pd.DataFrame(e) for e in events if len(e[key])]
    df = pd.concat(frames, ignore_index=True)
    cols = [col for col in frames[0].columns if col not in (key, "updated_at")]
    order = np.lexsort((np.arange(len(df)), df["updated_at"].to_numpy(), df[key].to_numpy()))
    df = df.iloc[order].reset_index(drop=True)
    df[cols] = df.groupby(key, sort=False)[cols].ffill()
    df["updated_at"] = _strictly_increasing(df[key].to_numpy(), df["updated_at"].to_numpy(np.int64))
    return df


def _text_col(s: pd.Series) -> np.ndarray:
    """A text column as an object array with ``None`` for NULL (pandas 3 turns it into
    its ``str`` dtype with NaN; pandas 2 keeps the objects)."""
    a = s.to_numpy(object, copy=True)
    a[pd.isna(a)] = None
    return a


def text_columns(df: pd.DataFrame, *names: str) -> dict[str, np.ndarray]:
    """The named text columns, each as ``_text_col`` makes it."""
    return {name: _text_col(df[name]) for name in names}


def reset_to_nan(x: pd.Series) -> np.ndarray:
    """A float column whose ``RESET`` values become NaN."""
    a = x.to_numpy(np.float64, na_value=np.nan)
    return np.where(a == RESET, np.nan, a)


def ts_col(x: np.ndarray) -> np.ndarray:
    """float µs with NaN → datetime64[us] with NaT."""
    x = np.asarray(x, dtype=np.float64)
    out = np.nan_to_num(x).astype(np.int64)  # µs below 2**53 are exact in float64
    out[np.isnan(x)] = NULL_TS
    return out.view("datetime64[us]")


def date_col(day_us: np.ndarray) -> np.ndarray:
    """µs at midnight → dates as datetime64[s]."""
    return (np.asarray(day_us, dtype=np.int64) // DAY).astype("datetime64[D]").astype("datetime64[s]")


def money(cents: np.ndarray) -> np.ndarray:
    """Cents → currency units rounded to cents."""
    return np.round(np.asarray(cents, dtype=np.float64) / 100.0, 2)


def us_col(x: pd.Series) -> np.ndarray:
    """int µs → datetime64[us]."""
    return x.to_numpy(np.int64).view("datetime64[us]")


def change_columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every table's last two columns: ``updated_at`` and the 0/1 deletion flag as bool."""
    return {"updated_at": us_col(df["updated_at"]), "is_deleted": df["is_deleted"].to_numpy() > 0}
