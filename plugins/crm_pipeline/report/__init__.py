"""The nightly report: one self-contained HTML page per published date for the people the
pipeline serves (account managers, the credit desk, analysts, whoever owns the night).

``data`` reads a date's figures from ``published.*`` and ``ops.*`` only (aggregates and short
lists, never a row per customer), ``charts`` turns them into Plotly figures, ``render``
writes the page with Jinja and the one bundled script beside it. Entry point:
:func:`crm_pipeline.report.render.write_report`.
"""
