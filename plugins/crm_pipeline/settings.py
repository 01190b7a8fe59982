"""Where the pipeline reads from and writes to, resolved at run time, never at import.

The source and the warehouse are the Airflow Connections ``crm_source`` and
``crm_warehouse`` (set them in the Airflow UI, a secrets backend, or the standard
``AIRFLOW_CONN_CRM_SOURCE`` / ``AIRFLOW_CONN_CRM_WAREHOUSE`` variables, as a URI or as
JSON). The state folder (Data Docs, dbt docs, run reports) is ``CRM_HOME``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from crm_pipeline.warehouse import WarehouseConfig

SOURCE_CONN_ID = "crm_source"
WAREHOUSE_CONN_ID = "crm_warehouse"
DEFAULT_HOME = ".crm"

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = Path(os.environ.get("CRM_DBT_PROJECT_DIR", PROJECT_ROOT / "dbt_project"))
DAGS_DIR = PROJECT_ROOT / "dags"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says what to set."""


def home() -> Path:
    return Path(os.environ.get("CRM_HOME", DEFAULT_HOME)).resolve()


def url_from_connection_fields(conn_type: str, host: str | None, login: str | None, password: str | None,
                               port: int | None, schema: str | None, extra: dict | None = None) -> str:
    """Build a SQLAlchemy-style URL from Airflow Connection fields."""
    extra = extra or {}
    if extra.get("url"):
        return extra["url"]
    conn_type = (conn_type or "").lower()
    if conn_type in ("duckdb",):
        return f"duckdb:///{host or extra.get('path', '')}"
    if conn_type in ("sqlite",):
        return f"sqlite:///{host or extra.get('path', '')}"
    auth = ""
    if login:
        auth = quote(login, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    if conn_type in ("postgres", "postgresql"):
        return f"postgresql://{auth}{host or '127.0.0.1'}:{port or 5432}/{schema or 'postgres'}"
    if conn_type in ("mysql", "mariadb"):
        return f"mysql+pymysql://{auth}{host or '127.0.0.1'}:{port or 3306}/{schema or ''}"
    raise ConfigError(f"connection type {conn_type!r} is not supported (use postgres, mysql, sqlite or duckdb)")


def _from_env(conn_id: str) -> str | None:
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not raw:
        return None
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"AIRFLOW_CONN_{conn_id.upper()} is not valid JSON: {exc.msg}") from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra or "{}")
        return url_from_connection_fields(
            data.get("conn_type", ""), data.get("host"), data.get("login"), data.get("password"),
            data.get("port"), data.get("schema"), extra,
        )
    if raw.startswith(("duckdb://", "sqlite://")):
        return raw
    if raw.startswith("postgres://"):
        return "postgresql://" + raw[len("postgres://"):]
    if raw.startswith("mysql://"):
        return "mysql+pymysql://" + raw[len("mysql://"):]
    return raw


def connection_url(conn_id: str) -> str:
    """The URL of an Airflow Connection: environment first, then Airflow's lookup."""
    url = _from_env(conn_id)
    if url:
        return url
    try:
        from airflow.sdk import Connection

        conn = Connection.get(conn_id)
    except Exception as exc:  # noqa: BLE001 - reported as a configuration problem
        raise ConfigError(
            f"no Airflow Connection {conn_id!r}: set AIRFLOW_CONN_{conn_id.upper()} "
            f"(e.g. postgresql://user@host:5432/db) or create it in Airflow ({type(exc).__name__})"
        ) from None
    return url_from_connection_fields(
        conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema, conn.extra_dejson
    )


@dataclass(frozen=True)
class RunSettings:
    source_url: str
    warehouse: WarehouseConfig
    home: Path

    @classmethod
    def resolve(cls) -> "RunSettings":
        return cls(
            source_url=connection_url(SOURCE_CONN_ID),
            warehouse=WarehouseConfig.from_url(connection_url(WAREHOUSE_CONN_ID)),
            home=home(),
        )
