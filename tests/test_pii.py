"""Personal data never leaves staging: a scan of every published table, on both warehouses.

The demo source carries contact names, emails and phone numbers (``raw.contacts``). After
a real run:

* no published column is named like personal data (email, phone, person names, address…);
* no value of a published text column looks like an email address or a phone number, or
  equals (after normalisation) any email, phone or contact name of the source;
* beyond published: no table outside ``raw``, ``quarantine`` and the ``staging`` views holds
  an email or a phone number (intermediate, audit, ops, config included), and the contact
  de-duplication keys are salted hashes that never persist.

PostgreSQL: the baseline's audit marts are copied into a fresh PostgreSQL warehouse and
published there with the PostgreSQL publish path, then scanned the same way.
"""

from __future__ import annotations

import re

import pytest

from crm_pipeline.publish import PUBLISHED_TABLES, publish
from wap_helpers import BASE_AS_OF, baseline_home, open_wh

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w-])\+?\d[\d ().-]{6,}\d(?![\w-])")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
PERSONAL_COLUMN = re.compile(
    r"e_?mail|phone|mobile|^tel$|telephone|fax|address|passport|birth|id_card|national_id|ssn"
    r"|^(name|contact_name|customer_name|person_name|full_name|first_name|last_name|given_name|family_name)$",
    re.I,
)


def looks_like_phone(text: str) -> bool:
    for m in PHONE.finditer(text):
        s = m.group(0)
        if ISO_DATE.match(s):
            continue
        if sum(ch.isdigit() for ch in s) >= 8:
            return True
    return False


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s or "")


def source_personal_values(wh) -> dict[str, set[str]]:
    """Every contact email (lower), phone (digits) and contact name in raw."""
    rows = wh.query("select email, phone, name from raw.contacts")
    return {
        "email": {e.strip().lower() for e, _, _ in rows if e and e.strip()},
        "phone": {_digits(p) for _, p, _ in rows if p and len(_digits(p)) >= 7},
        "name": {n.strip() for _, _, n in rows if n and len(n.strip()) >= 4},
    }


def text_columns(wh, schema: str, table: str) -> list[str]:
    rows = wh.query(
        "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position",
        (schema, table),
    )
    return [c for c, t in rows if str(t).upper() in ("VARCHAR", "TEXT", "CHARACTER VARYING")]


def base_tables(wh, schema: str) -> list[str]:
    return [r[0] for r in wh.query(
        "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE' "
        "order by table_name", (schema,))]


def scan_table(wh, schema: str, table: str, personal: dict[str, set[str]] | None) -> list[str]:
    """Findings (empty when clean) for one table: personal column names and values."""
    findings = [f"{schema}.{table}.{c}: personal column name" for c in wh.columns(schema, table)
                if PERSONAL_COLUMN.search(c)]
    for col in text_columns(wh, schema, table):
        values = [r[0] for r in wh.query(f"select distinct {col} from {schema}.{table} where {col} is not null")]
        for v in values:
            s = str(v)
            if EMAIL.search(s):
                findings.append(f"{schema}.{table}.{col}: email-like value {s[:60]!r}")
            elif looks_like_phone(s):
                findings.append(f"{schema}.{table}.{col}: phone-like value {s[:60]!r}")
            elif personal and (s.strip().lower() in personal["email"] or _digits(s) in personal["phone"]
                               or s.strip() in personal["name"]):
                findings.append(f"{schema}.{table}.{col}: a source contact detail {s[:60]!r}")
            if len(findings) > 20:
                return findings
    return findings


def test_the_scanner_finds_personal_data():
    assert EMAIL.search("write to weihu525@163.com please")
    assert looks_like_phone("+86 151 9797 1025") and looks_like_phone("+49 30 4996093")
    assert looks_like_phone("(021) 6234-5678")
    for harmless in ("2026-06-30", "2026-06-30 12:00:00", "555", "Champions", "pts_debt_ratio, ind_net_margin",
                     "VIP", "2026-Q2", "12.5", "1234567"):
        assert not EMAIL.search(harmless) and not looks_like_phone(harmless), harmless
    assert PERSONAL_COLUMN.search("email") and PERSONAL_COLUMN.search("contact_phone")
    assert PERSONAL_COLUMN.search("name") and not PERSONAL_COLUMN.search("segment")
    assert not PERSONAL_COLUMN.search("account_manager")
    assert PERSONAL_COLUMN.search("has_email")  # presence flags are matched, and allowed by name below


def _scan_published(wh, personal) -> list[str]:
    tables = wh.tables("published")
    assert {"customer_segments", "customer_rfm", "customer_value_tiers"} <= set(tables)
    findings: list[str] = []
    for t in tables:
        findings += scan_table(wh, "published", t, personal)
    return findings


@pytest.mark.slow
def test_published_tables_hold_no_personal_data_duckdb(tmp_path_factory):
    home = baseline_home(tmp_path_factory)
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        personal = source_personal_values(wh)
        assert len(personal["email"]) > 50 and len(personal["phone"]) > 50  # the source does have some
        findings = _scan_published(wh, personal)
    # has_email / has_phone-style flags are allowed (booleans, not details); the regex on
    # column names only fires for the personal fields themselves
    findings = [f for f in findings if not re.search(r"\.has_(email|phone): personal column name", f)]
    assert findings == []


@pytest.mark.slow
def test_the_only_person_named_in_published_is_the_customers_account_manager(tmp_path_factory):
    """What the README promises: no name of a customer's people is published; the account
    manager (staff, who acts on the lists) is the one person named, and only in the column
    that says so."""
    home = baseline_home(tmp_path_factory)
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        staff = {r[0] for r in wh.query("select distinct account_manager from raw.customers "
                                        "where account_manager is not null")}
        contacts = source_personal_values(wh)["name"]
        published = {r[0] for r in wh.query("select distinct account_manager from published.customer_segments "
                                            "where account_manager is not null")}
        columns = {(t, c) for t in wh.tables("published") for c in wh.columns("published", t)
                   if "manager" in c or "owner" in c}
    assert len(staff) >= 3 and published and published <= staff
    assert not (published & contacts)
    assert {c for _, c in columns if "manager" in c} == {"account_manager"}
    # the tables that route work to account managers (README, "What BI reads")
    assert {t for t, c in columns if c == "account_manager"} == {
        "customer_segments", "reorder_reminders", "churn_reasons", "segment_pnl"}
    for table in ("reorder_reminders", "churn_reasons", "segment_pnl"):
        with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
            named = {r[0] for r in wh.query(f"select distinct account_manager from published.{table}")}
        assert named - {"(unassigned)", "(all)"} <= staff and not (named & contacts), table


@pytest.mark.slow
def test_no_email_or_phone_outside_raw_quarantine_and_staging(tmp_path_factory):
    home = baseline_home(tmp_path_factory)
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as wh:
        personal = source_personal_values(wh)
        schemas = [r[0] for r in wh.query(
            "select distinct table_schema from information_schema.tables where table_catalog = current_database()")]
        findings: list[str] = []
        scanned = 0
        for schema in schemas:
            if schema in ("raw", "quarantine", "information_schema", "pg_catalog", "main"):
                continue
            # staging: its views are not materialised; a table there (the incremental
            # latest orders) is scanned like any other
            for t in base_tables(wh, schema):
                scanned += 1
                findings += [f for f in scan_table(wh, schema, t, personal)
                             if not re.search(r"\.has_(email|phone): personal column name", f)]
        # the staging models that read personal columns stay views: nothing of them is stored
        assert not {"stg_crm__contacts", "stg_crm__customers"} & set(base_tables(wh, "staging"))
        hygiene_cols = wh.columns("intermediate", "int_contact_hygiene")
    assert scanned > 20
    assert findings == []
    assert not any(re.search(r"email|phone|_key$", c) for c in hygiene_cols), hygiene_cols


# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------
def _pg_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith("DECIMAL"):
        return t.replace("DECIMAL", "numeric")
    return {"VARCHAR": "text", "DOUBLE": "double precision", "FLOAT": "real", "HUGEINT": "numeric"}.get(t, t)


@pytest.mark.slow
@pytest.mark.postgres
def test_published_tables_hold_no_personal_data_postgres(tmp_path_factory, pg_database):
    home = baseline_home(tmp_path_factory)
    names = {t.name for t in PUBLISHED_TABLES}
    with open_wh(f"duckdb:///{home / 'warehouse.duckdb'}") as duck, open_wh(pg_database) as pg:
        personal = source_personal_values(duck)
        pg.ensure_schemas()
        pg.execute("create schema if not exists audit")
        for table in duck.tables("audit"):
            if table not in names:
                continue
            cols = duck.query("select column_name, data_type from information_schema.columns where table_schema = "
                              "'audit' and table_name = ? order by ordinal_position", (table,))
            pg.execute(f"create table audit.{table} (" + ", ".join(f"{c} {_pg_type(t)}" for c, t in cols) + ")")
            pg.append_df("audit", table, duck.query_df(f"select * from audit.{table}"))
        result = publish(pg, BASE_AS_OF, "pii-scan")
        assert result.tables["customer_segments"] > 200
        findings = _scan_published(pg, personal)
    findings = [f for f in findings if not re.search(r"\.has_(email|phone): personal column name", f)]
    assert findings == []
