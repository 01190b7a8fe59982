"""The production deployment in docker/: what can be checked without a Docker engine.

The compose file parses, names the Airflow 3 services with the LocalExecutor, gives every
Airflow service the connections and settings the DAG needs from the environment (no
literal secrets), and the image installs the project from the same lock as CI.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_names_the_airflow_services_and_postgres():
    services = _compose()["services"]
    assert {"postgres", "airflow-init", "api-server", "scheduler", "dag-processor", "triggerer"} <= set(services)
    commands = {name: " ".join(svc.get("command", [])) for name, svc in services.items()}
    assert commands["scheduler"] == "airflow scheduler"
    assert commands["dag-processor"] == "airflow dag-processor"
    assert commands["triggerer"] == "airflow triggerer"
    assert commands["api-server"].startswith("airflow api-server")
    assert commands["airflow-init"] == "airflow db migrate"


def test_every_airflow_service_gets_the_pipeline_environment():
    services = _compose()["services"]
    for name in ("api-server", "scheduler", "dag-processor", "triggerer", "airflow-init"):
        env = services[name]["environment"]
        # LocalExecutor unless the `celery` profile's AIRFLOW_EXECUTOR says otherwise
        assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/crm/dags"
        assert env["AIRFLOW_CONN_CRM_WAREHOUSE"].startswith("postgresql://")
        assert "AIRFLOW_CONN_CRM_SOURCE" in env
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        # every secret is interpolated from the environment, none is written here
        for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "CRM_PII_SALT"):
            assert env[key].startswith("${"), key
        assert re.search(r":\$\{[A-Z_]+", env["AIRFLOW_CONN_CRM_WAREHOUSE"])
        assert "airflow-home" in " ".join(services[name]["volumes"])
    assert {"postgres-data", "airflow-home"} <= set(_compose()["volumes"])


def test_the_celery_profile_adds_a_broker_and_workers_from_the_same_image():
    compose = _compose()
    services = compose["services"]
    assert services["redis"]["profiles"] == ["celery"] and services["worker"]["profiles"] == ["celery"]
    assert services["worker"]["command"] == ["airflow", "celery", "worker"]
    assert services["worker"]["image"] == services["scheduler"]["image"]
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    env = services["worker"]["environment"]
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    # the workers' Celery settings are the project's, which load the night's libraries once
    assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "crm_pipeline.celery_config.CELERY_CONFIG"
    # the result backend is the metadata database, its password from the environment
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:${POSTGRES_PASSWORD")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@postgres:5432/airflow")
    assert "--extra celery" in (DOCKER / "Dockerfile").read_text()
    # the services that do not belong to the profile run on any executor
    assert all("profiles" not in services[n] for n in ("postgres", "api-server", "scheduler", "dag-processor"))


def test_postgres_service_is_healthchecked_and_initialises_both_databases():
    pg = _compose()["services"]["postgres"]
    assert pg["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    init = (DOCKER / "postgres-init.sh").read_text()
    assert "create database airflow" in init and "create database warehouse" in init


def test_image_installs_from_the_same_lock_as_ci():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "uv sync --locked" in ci
    assert re.search(r"RUN uv sync --locked( --no-dev)?( --extra celery)?\n", dockerfile)
    assert "COPY --chown=airflow pyproject.toml uv.lock" in dockerfile
    for folder in ("dags", "dbt_project", "plugins", "expectations"):
        assert f"COPY --chown=airflow {folder}" in dockerfile
    assert "FROM python:3.11" in dockerfile


def test_no_env_file_with_secrets_is_committed():
    assert not (DOCKER / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()
    example = (DOCKER / ".env.example").read_text()
    for line in example.splitlines():
        if line and not line.startswith("#"):
            assert line.endswith("="), f"the example must not carry a value: {line}"
