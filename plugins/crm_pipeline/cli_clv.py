"""``crm clv``: fit the lifetime-value models on a transactions CSV, for analysts.

``crm clv fit --transactions FILE.csv --as-of DATE`` reads one row per transaction
(customer id, date or timestamp, amount; column names set by flags), builds the
frequency / recency / T / monetary summary as of the date (transactions on the same
calendar day are one purchase, transactions after the date are ignored), fits BG/NBD and
Gamma-Gamma (:func:`crm_pipeline.clv.fit_and_predict`) and prints the parameters as
JSON on stdout. ``--predictions OUT.csv`` also writes one row per customer.

Exit codes: 0 fitted (status 'ok'); 2 the data did not give a usable fit (the JSON
is still printed; its status and message say why, no predictions are written); 1 the
input cannot be used (one line on stderr, no traceback unless ``--debug``).
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import clv, settings

clv_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                      help="Customer lifetime value (BG/NBD + Gamma-Gamma) for analysts.")


class InputError(Exception):
    """The transactions file cannot be used; the message is one line."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def read_transactions(path: Path, customer_col: str, date_col: str, amount_col: str,
                      date_format: Optional[str] = None):
    """The transactions with parsed dates and amounts; InputError with one line otherwise."""
    import pandas as pd

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a CSV file")
    try:
        df = pd.read_csv(path, dtype={customer_col: str}, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is not a readable CSV file: {first}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in (customer_col, date_col, amount_col) if c not in df.columns]
    if missing:
        raise InputError(
            f"{path} has no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(df.columns)}); "
            "name them with --customer-col / --date-col / --amount-col"
        )
    if df.empty:
        raise InputError(f"{path} has a header but no transactions")

    def row_of(mask) -> str:
        i = int(mask.to_numpy().nonzero()[0][0])
        return f"line {i + 2}"  # the header is line 1

    ids = df[customer_col]
    if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
        bad = ids.isna() | (ids.astype(str).str.strip() == "")
        raise InputError(f"{path} {row_of(bad)}: {customer_col} is empty")
    df[customer_col] = ids.astype(str).str.strip()

    raw_dates = df[date_col]
    if raw_dates.isna().any():
        raise InputError(f"{path} {row_of(raw_dates.isna())}: {date_col} is empty")
    try:
        if date_format:
            when = pd.to_datetime(raw_dates.astype(str).str.strip(), format=date_format, errors="coerce")
        else:
            when = pd.to_datetime(raw_dates.astype(str).str.strip(), format="ISO8601", errors="coerce", utc=False)
    except (ValueError, TypeError):  # e.g. mixed time zones
        when = pd.Series(pd.NaT, index=df.index)
    if when.isna().any():
        bad = when.isna()
        hint = f"the format {date_format!r}" if date_format else "YYYY-MM-DD (ISO 8601), or give --date-format"
        raise InputError(f"{path} {row_of(bad)}: {date_col} {str(raw_dates[bad].iloc[0])!r} is not a date in {hint}")
    df[date_col] = when

    amounts = pd.to_numeric(df[amount_col], errors="coerce").astype("float64")
    bad = amounts.isna() | ~amounts.map(math.isfinite)
    if bad.any():
        raise InputError(f"{path} {row_of(bad)}: {amount_col} {str(df[amount_col][bad].iloc[0])!r} is not a number")
    df[amount_col] = amounts.astype("float64")
    return df


def _jsonable(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


@clv_app.command("fit")
def fit(
    transactions: Path = typer.Option(..., "--transactions", help="CSV file with one row per transaction and a header."),
    as_of: str = typer.Option(..., "--as-of", help="Fit on transactions up to the end of this day, YYYY-MM-DD."),
    time_unit: str = typer.Option("weeks", "--time-unit", help="weeks or days: the unit of recency, T and alpha."),
    customer_col: str = typer.Option("customer_id", "--customer-col", help="Column with the customer id."),
    date_col: str = typer.Option("date", "--date-col", help="Column with the transaction date or timestamp."),
    amount_col: str = typer.Option("amount", "--amount-col", help="Column with the transaction amount."),
    date_format: Optional[str] = typer.Option(None, "--date-format",
                                              help="strftime format of the dates, e.g. %Y%m%d (default ISO 8601)."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Also write per-customer predictions to this CSV."),
    discount_rate: float = typer.Option(0.10, "--discount-rate", help="Annual discount rate of the 12-month CLV."),
    margin_share: float = typer.Option(1.0, "--margin-share", help="Gross-margin share applied to the CLV (1 = revenue)."),
    min_repeat_buyers: int = typer.Option(30, "--min-repeat-buyers", help="Fewer repeat buyers than this: no fit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Fit BG/NBD and Gamma-Gamma on a transactions CSV and print the parameters as JSON."""
    debug = debug or settings.debug()
    try:
        _fit(transactions, as_of, time_unit, customer_col, date_col, amount_col, date_format, predictions,
             discount_rate, margin_share, min_repeat_buyers)
    except typer.Exit:
        raise
    except InputError as exc:
        if debug:
            raise
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001
        if debug:
            raise
        text = str(exc).strip()
        _fail(f"{type(exc).__name__}: {text.splitlines()[0] if text else 'unexpected error'} (run with --debug for details)")


def _fit(transactions: Path, as_of: str, time_unit: str, customer_col: str, date_col: str, amount_col: str,
         date_format: Optional[str], predictions: Optional[Path], discount_rate: float, margin_share: float,
         min_repeat_buyers: int) -> None:

    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise InputError(f"--as-of {as_of!r} is not a date: write it as YYYY-MM-DD") from None
    if time_unit not in clv.DAYS_PER_UNIT:
        raise InputError(f"--time-unit {time_unit!r}: use weeks or days")
    if not (math.isfinite(discount_rate) and 0 <= discount_rate < 10):
        raise InputError(f"--discount-rate {discount_rate}: use an annual rate such as 0.10")
    if not (0 <= margin_share <= 1):
        raise InputError(f"--margin-share {margin_share}: use a share between 0 and 1")
    if len({customer_col, date_col, amount_col}) < 3:
        raise InputError("--customer-col, --date-col and --amount-col must name three different columns")
    if predictions is not None and not predictions.parent.exists():
        raise InputError(f"--predictions {predictions}: folder {predictions.parent} does not exist")

    df = read_transactions(transactions, customer_col, date_col, amount_col, date_format)
    summary = clv.summary_from_transactions(df, customer_col, date_col, amount_col, day, time_unit=time_unit)
    if summary.empty:
        raise InputError(f"{transactions} has no transactions on or before {day}")
    params, pred = clv.fit_and_predict(
        summary, day, time_unit=time_unit, annual_discount_rate=discount_rate, margin_share=margin_share,
        min_repeat_buyers=min_repeat_buyers,
    )
    params = _jsonable(params)
    if pred is not None and predictions is not None:
        pred = pred.rename(columns={"customer_id": customer_col})
        pred.to_csv(predictions, index=False)
        params["predictions"] = str(predictions)
        params["predictions_rows"] = int(len(pred))
    typer.echo(json.dumps(params, indent=2))
    if params.get("status") != "ok":
        typer.echo(f"warning: no usable fit ({params.get('status')}): {params.get('message')}"
                   + ("; no predictions written" if predictions is not None else ""), err=True)
        raise typer.Exit(2)
