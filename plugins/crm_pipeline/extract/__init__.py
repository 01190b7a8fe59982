"""Incremental, idempotent extraction of the source entities into ``raw.*``: one batch per
entity per run, its window derived from what already landed in ``raw``, committed whole
or not at all. This package exposes the API the pipeline, benchmarks and tests use."""

from crm_pipeline.extract.accounting import (
    Accounting,
    SourceNotReconciled,
    account_for_source,
    canonical_change_time,
    require_reconciled,
)
from crm_pipeline.extract.admission import (
    ADMITTED,
    PARENT_RULE,
    REJECTED,
    STATES,
    SUPERSEDED,
    DecisionRefused,
    admit_waiting,
    decide,
    list_rows,
    state_counts,
)
from crm_pipeline.extract.hashing import (
    key_text,
    loaded_row_hash_sql,
    money_text_sql,
    row_hash_sql,
    row_hashes,
    stored_hash_sql,
)
from crm_pipeline.extract.pushdown import (
    INDEXED_WINDOW_MARGIN,
    SOURCE_ALIAS,
    SUSPECT_MARK,
    WAREHOUSE_ALIAS,
    attached_source,
    pushdown_possible,
    source_key_is_unique,
    source_window_indexed,
    sql_warehouse,
)
from crm_pipeline.extract.raw_store import (
    LANDING_PREFIX,
    NEVER_VISIBLE,
    OPS_DDL,
    QUARANTINE_COLUMNS,
    WAITING,
    BatchRejected,
    BatchStats,
    drop_landing_tables,
    ensure_tables,
    extraction_window,
    index_raw_windows,
    purge_unchecked_rows,
    recent_batch_sizes,
    watermark,
)
from crm_pipeline.extract.readers import (
    CONNECTORX_PAGE_CHUNKS,
    DEFAULT_CHUNK_ROWS,
    READER_CHOICES,
    READERS,
    SourceError,
    iter_source_chunks,
    reader_chain,
    reader_from_env,
    source_columns,
    source_engine,
)
from crm_pipeline.extract.run import (
    DEFAULT_OVERLAP,
    chunk_rows_from_env,
    extract_all,
    extract_entity,
    known_customers_loader,
    overlap_from_env,
)

__all__ = [
    # running a batch, an entity, a run
    "extract_all", "extract_entity", "known_customers_loader",
    "overlap_from_env", "chunk_rows_from_env", "reader_from_env", "DEFAULT_OVERLAP",
    # the source
    "SourceError", "source_engine", "source_columns", "reader_chain", "iter_source_chunks",
    "DEFAULT_CHUNK_ROWS", "READERS", "READER_CHOICES", "CONNECTORX_PAGE_CHUNKS",
    # row hashes
    "row_hashes", "key_text", "row_hash_sql", "money_text_sql", "stored_hash_sql", "loaded_row_hash_sql",
    # the raw store
    "BatchRejected", "BatchStats", "ensure_tables", "watermark", "index_raw_windows", "extraction_window",
    "recent_batch_sizes", "drop_landing_tables", "purge_unchecked_rows",
    "LANDING_PREFIX", "NEVER_VISIBLE", "OPS_DDL", "QUARANTINE_COLUMNS", "WAITING",
    # every source row accounted for
    "account_for_source", "require_reconciled", "canonical_change_time", "Accounting", "SourceNotReconciled",
    # the waiting room: states of quarantined rows and the decisions on them
    "admit_waiting", "decide", "list_rows", "state_counts", "DecisionRefused",
    "STATES", "ADMITTED", "REJECTED", "SUPERSEDED", "PARENT_RULE",
    # the pushdown path
    "pushdown_possible", "sql_warehouse", "attached_source", "source_key_is_unique", "source_window_indexed",
    "SOURCE_ALIAS", "WAREHOUSE_ALIAS", "SUSPECT_MARK", "INDEXED_WINDOW_MARGIN",
]
