"""The source contract: the five entities the nightly run extracts, their columns and types.

This module is the single place that names source columns. The demo generator writes
these tables, extraction reads them, gate 1 checks them and the dbt staging models
select them; a column renamed here is renamed everywhere.

Types are logical: ``int``, ``text``, ``money`` (DECIMAL(14,2)), ``date``,
``timestamp`` and ``bool``. Timestamps are naive UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REPORTING_CURRENCY = "CNY"
#: Currencies the pipeline can convert to the reporting currency (see the dbt seed
#: ``fx_rates``). Any other currency is a data error that quarantines the row.
KNOWN_CURRENCIES = ("CNY", "USD", "EUR", "HKD")

CUSTOMER_TYPES = ("enterprise", "individual")
ACQUISITION_CHANNELS = ("self_developed", "advertising", "referral")
CUSTOMER_STATUSES = ("active", "inactive", "blocked")
ORDER_STATUSES = ("placed", "shipped", "cancelled", "returned")
COMPLAINT_STATUSES = ("open", "in_progress", "resolved", "reopened")
COMPLAINT_SEVERITIES = (1, 2, 3, 4)
#: CUTE buying-centre roles: Coach, User/maintainer, Technical gatekeeper,
#: Economic decision-maker.
CONTACT_ROLES = ("coach", "user", "technical", "economic")


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    columns: dict[str, str]
    #: columns holding personal data: never published, hashed where a key is needed
    personal: tuple[str, ...] = field(default_factory=tuple)
    #: the change timestamp that incremental extraction reads
    updated_at: str = "updated_at"
    #: True when the entity carries the ``is_deleted`` soft-delete flag
    soft_delete: bool = True


CUSTOMERS = Entity(
    name="customers",
    key="customer_id",
    columns={
        "customer_id": "int",
        "name": "text",
        "customer_type": "text",
        "industry": "text",
        "region": "text",
        "acquisition_channel": "text",
        "account_manager": "text",
        "credit_limit": "money",
        "status": "text",
        "created_at": "timestamp",
        "updated_at": "timestamp",
        "is_deleted": "bool",
    },
)

CONTACTS = Entity(
    name="contacts",
    key="contact_id",
    columns={
        "contact_id": "int",
        "customer_id": "int",
        "name": "text",
        "title": "text",
        "email": "text",
        "phone": "text",
        "role": "text",
        "last_verified_at": "timestamp",
        "updated_at": "timestamp",
        "is_deleted": "bool",
    },
    personal=("name", "email", "phone"),
)

ORDERS = Entity(
    name="orders",
    key="order_id",
    columns={
        "order_id": "int",
        "customer_id": "int",
        "order_date": "date",
        "status": "text",
        "currency": "text",
        "gross_amount": "money",
        "cost_amount": "money",
        "product_category": "text",
        "invoice_due_date": "date",
        "paid_amount": "money",
        "paid_at": "timestamp",
        "written_off_amount": "money",
        "updated_at": "timestamp",
        "is_deleted": "bool",
    },
)

COMPLAINTS = Entity(
    name="complaints",
    key="complaint_id",
    columns={
        "complaint_id": "int",
        "customer_id": "int",
        "order_id": "int",
        "opened_at": "timestamp",
        "category": "text",
        "severity": "int",
        "channel": "text",
        "status": "text",
        "resolved_at": "timestamp",
        "compensation_amount": "money",
        "description": "text",
        "updated_at": "timestamp",
        "is_deleted": "bool",
    },
)

FINANCIAL_STATEMENTS = Entity(
    name="financial_statements",
    key="statement_id",
    columns={
        "statement_id": "int",
        "customer_id": "int",
        "period_end": "date",
        "revenue": "money",
        "net_profit": "money",
        "total_assets": "money",
        "total_liabilities": "money",
        "current_assets": "money",
        "current_liabilities": "money",
        "updated_at": "timestamp",
        "is_deleted": "bool",
    },
)

ENTITIES: tuple[Entity, ...] = (CUSTOMERS, CONTACTS, ORDERS, COMPLAINTS, FINANCIAL_STATEMENTS)
ENTITY_BY_NAME = {e.name: e for e in ENTITIES}

#: Bookkeeping columns that extraction adds to every ``raw.<entity>`` row.
#: ``_visible_from`` is the logical date from which the row version counts as known:
#: the run's ``as_of`` for an incremental batch, the row's own ``updated_at`` date for
#: the first (full-history) load. Staging reads a version only when
#: ``_visible_from <= as_of`` and ``updated_at`` is before the end of ``as_of``.
RAW_META_COLUMNS = {
    "_batch_id": "text",
    "_as_of": "date",
    "_visible_from": "date",
    "_window_start": "timestamp",
    "_window_end": "timestamp",
    "_loaded_at": "timestamp",
    "_row_hash": "text",
}
