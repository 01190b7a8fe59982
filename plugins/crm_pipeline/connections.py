"""Where the pipeline reads from and writes to: connection URLs, resolved at run time.

The source and the warehouse are the Airflow Connections ``crm_source`` and
``crm_warehouse`` (set in the Airflow UI, a secrets backend, or the standard
``AIRFLOW_CONN_CRM_SOURCE`` / ``AIRFLOW_CONN_CRM_WAREHOUSE`` variables, as a URI or as
JSON). This module turns them into URLs, SQLAlchemy engines' URLs and dbt's profile
environment, and hides passwords wherever a URL is shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from crm_pipeline import settings
from crm_pipeline.settings import ConfigError
from crm_pipeline.spark_session import SPARK_DIR_VARIABLE

SOURCE_CONN_ID = "crm_source"
#: a Spark warehouse's control store, in its folder (``WarehouseConfig.control``)
CONTROL_FILE = "control.duckdb"
WAREHOUSE_CONN_ID = "crm_warehouse"


def redact(url: str) -> str:
    """A URL with its password replaced, safe for logs and summaries."""
    return re.sub(r"(://[^:/@\s]*):[^@/\s]*@", r"\1:***@", url)


def sqlalchemy_url(url: str) -> str:
    """A URL as a user writes it (postgresql://, mysql://, mariadb://) with the driver
    SQLAlchemy should use."""
    for prefix, driver in (("postgresql://", "postgresql+psycopg2://"), ("postgres://", "postgresql+psycopg2://"),
                           ("mysql://", "mysql+pymysql://"), ("mariadb://", "mariadb+pymysql://")):
        if url.startswith(prefix):
            return driver + url[len(prefix):]
    return url


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
    if conn_type == "spark" and extra.get("path"):
        # a local Spark session's folder (README, Warehouses)
        return f"spark://{Path(extra['path']).resolve()}"
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
    raise ConfigError(f"connection type {conn_type!r} is not supported (use postgres, mysql, sqlite, duckdb "
                      "or spark with extra path)")


def _from_env(conn_id: str) -> str | None:
    value = settings.airflow_connection(conn_id)
    if not value:
        return None
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"AIRFLOW_CONN_{conn_id.upper()} is not valid JSON: {exc.msg}") from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra or "{}")
        return url_from_connection_fields(
            data.get("conn_type", ""), data.get("host"), data.get("login"), data.get("password"),
            data.get("port"), data.get("schema"), extra,
        )
    if value.startswith(("duckdb://", "sqlite://")):
        return value
    if value.startswith("postgres://"):
        return "postgresql://" + value[len("postgres://"):]
    if value.startswith("mysql://"):
        return "mysql+pymysql://" + value[len("mysql://"):]
    return value


def connection_url(conn_id: str) -> str:
    """The URL of an Airflow Connection: environment first, then Airflow's lookup."""
    url = _from_env(conn_id)
    if url:
        return url
    try:
        from airflow.sdk import Connection  # Airflow is imported only when a lookup is needed

        conn = Connection.get(conn_id)
    except Exception as exc:  # noqa: BLE001 - reported as a configuration problem
        raise ConfigError(
            f"no Airflow Connection {conn_id!r}: set AIRFLOW_CONN_{conn_id.upper()} "
            f"(e.g. postgresql://user@host:5432/db) or create it in Airflow ({type(exc).__name__})"
        ) from None
    return url_from_connection_fields(
        conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema, conn.extra_dejson
    )


def pg_session_options() -> str:
    """libpq's ``PGOPTIONS`` for dbt's PostgreSQL sessions: ``work_mem`` at
    ``CRM_PG_WORK_MEM`` (default 256MB), after whatever ``PGOPTIONS`` already holds (a
    ``work_mem`` there is kept unless ``CRM_PG_WORK_MEM`` is set).

    PostgreSQL's default of 4MB makes every hash join, aggregate and sort over the
    orders spill to disk in batches. The models run one statement per session, at most
    ``threads`` at once, so the memory a night can take is bounded by a few times this
    value (a plan may hold several hash tables, each up to work_mem)."""
    value, explicit = settings.pg_work_mem()
    own = f"-c work_mem={value}"
    inherited = settings.pgoptions()
    if own in inherited or ("work_mem" in inherited and not explicit):
        return inherited
    return f"{inherited} {own}".strip()


@dataclass(frozen=True)
class WarehouseConfig:
    """Where the warehouse is: a DuckDB file path, a PostgreSQL URL, or the folder of a
    local Spark session (``spark:///path``: its Parquet tables and metastore)."""

    kind: str  # "duckdb" | "postgres" | "spark"
    duckdb_path: Path | None = None
    url: str | None = None
    spark_dir: Path | None = None

    @classmethod
    def from_url(cls, url: str) -> "WarehouseConfig":
        if url.startswith("duckdb:///"):
            return cls(kind="duckdb", duckdb_path=Path(url[len("duckdb:///"):]))
        if url.startswith("spark:///"):
            return cls(kind="spark", spark_dir=Path(url[len("spark:///") - 1:]))
        if url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
            return cls(kind="postgres", url=url)
        if url.endswith(".duckdb"):
            return cls(kind="duckdb", duckdb_path=Path(url))
        raise ValueError(
            f"unsupported warehouse URL {redact(url)!r}: use duckdb:///path/warehouse.duckdb, "
            "postgresql://user@host:port/dbname or spark:///path/spark-folder"
        )

    @property
    def control(self) -> "WarehouseConfig":
        """Where a night's bookkeeping (raw, quarantine, ops) lives: the warehouse itself,
        or for a Spark warehouse the embedded DuckDB file ``control.duckdb`` in its folder
        (Parquet tables take no row-level update; ``crm_pipeline.spark_landing``)."""
        if self.kind != "spark":
            return self
        return WarehouseConfig(kind="duckdb", duckdb_path=self.spark_dir / CONTROL_FILE)

    @property
    def display(self) -> str:
        if self.kind == "spark":
            return f"spark://{self.spark_dir}"
        return str(self.duckdb_path) if self.kind == "duckdb" else redact(self.url or "")

    def dbt_env(self) -> dict[str, str]:
        """Environment for the dbt profile (profiles.yml reads only these variables)."""
        if self.kind == "duckdb":
            return {"CRM_DBT_TARGET": "duckdb", "CRM_DUCKDB_PATH": str(self.duckdb_path)}
        if self.kind == "spark":
            return {"CRM_DBT_TARGET": "spark", SPARK_DIR_VARIABLE: str(self.spark_dir)}
        parts = urlparse(self.url.replace("postgresql+psycopg2://", "postgresql://"))
        return {
            "CRM_DBT_TARGET": "postgres",
            "CRM_PG_HOST": parts.hostname or "127.0.0.1",
            "CRM_PG_PORT": str(parts.port or 5432),
            "CRM_PG_USER": unquote(parts.username or "postgres"),
            "DBT_ENV_SECRET_PG_PASSWORD": unquote(parts.password or ""),
            "CRM_PG_DBNAME": (parts.path or "/postgres").lstrip("/") or "postgres",
            "PGOPTIONS": pg_session_options(),
        }


@dataclass(frozen=True)
class RunSettings:
    """The source, the warehouse and the state folder of this run."""

    source_url: str
    warehouse: WarehouseConfig
    home: Path

    @classmethod
    def resolve(cls) -> "RunSettings":
        return cls(
            source_url=connection_url(SOURCE_CONN_ID),
            warehouse=WarehouseConfig.from_url(connection_url(WAREHOUSE_CONN_ID)),
            home=settings.home(),
        )
