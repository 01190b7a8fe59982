"""Predicted customer lifetime value: BG/NBD for repeat purchases, Gamma-Gamma for spend.

Pure numpy/scipy; the ``lifetimes`` package is used only by the benchmark and as the
source of the CDNOW test fixture. The pipeline calls :func:`fit_and_predict`, which
never raises for data reasons and reports ``status`` 'ok', 'not_converged',
'hit_bound' or 'too_few_repeat_buyers' with the parameters it stores per ``as_of``.
Modules: ``data`` (customer summaries), ``optimize`` (the likelihood maximiser),
``fits`` (BG/NBD and Gamma-Gamma), ``predict`` (predictions and the entry point).
"""

from crm_pipeline.clv.data import DAYS_PER_MONTH, DAYS_PER_UNIT, TimeUnit, summary_from_transactions
from crm_pipeline.clv.fits import BGNBDFit, GammaGammaFit, fit_bgnbd, fit_gamma_gamma
from crm_pipeline.clv.predict import (
    PREDICTION_COLUMNS,
    clv,
    expected_average_order_value,
    expected_purchases,
    fit_and_predict,
    predict,
    prob_alive,
)

__all__ = [
    "BGNBDFit", "DAYS_PER_MONTH", "DAYS_PER_UNIT", "GammaGammaFit", "PREDICTION_COLUMNS", "TimeUnit",
    "clv", "expected_average_order_value", "expected_purchases", "fit_and_predict", "fit_bgnbd",
    "fit_gamma_gamma", "predict", "prob_alive", "summary_from_transactions",
]
