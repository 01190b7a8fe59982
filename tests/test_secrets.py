"""No password is ever written, whichever way it came in.

Each case runs ``crm`` in its own process (so whatever reads the process's command line,
as dbt does for its artifacts, sees what a user's shell would pass) with a unique password
in the source or warehouse connection, then searches for it: the command's output, every
file under the state folder and under a home folder of its own, and every text value of
the warehouse's ``ops`` tables. The test server trusts local connections, so any password
is accepted and only its traces matter.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg2
import pytest

from helpers import crm

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

AS_OF = "2026-03-31"
CUSTOMERS = "300"


def _secret() -> str:
    return f"pw{uuid.uuid4().hex[:12]}Q"


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://postgres:{password}@{rest.split('@', 1)[-1]}"


def _files_with(root: Path, secret: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and secret.encode() in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


def _ops_values_with(warehouse_url: str, secret: str) -> list[str]:
    """Tables and columns of ``ops`` whose text holds the secret."""
    if warehouse_url.startswith("duckdb:///"):
        import duckdb

        con = duckdb.connect(warehouse_url[len("duckdb:///"):], read_only=True)
        query = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    else:
        con = psycopg2.connect(warehouse_url)
        cur = con.cursor()

        def query(sql):
            cur.execute(sql)
            return cur.fetchall()
    try:
        found = []
        columns = query("select table_name, column_name from information_schema.columns "
                        "where table_schema = 'ops' order by 1, 2")
        assert len(columns) > 10  # the run record is there to search
        for table, column in columns:
            hits = query(f"select count(*) from ops.{table} where cast({column} as varchar) like '%{secret}%'")
            if hits[0][0]:
                found.append(f"ops.{table}.{column}")
        return found
    finally:
        con.close()


def _assert_nowhere(secret: str, outputs: list, roots: list[Path], warehouse_url: str) -> None:
    for result in outputs:
        assert secret not in result.stdout + result.stderr
    for root in roots:
        assert _files_with(root, secret) == []
    assert _ops_values_with(warehouse_url, secret) == []


def _check_search_finds_it(tmp_path: Path) -> None:
    """The file search itself finds a password where there is one."""
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "x.json").write_text('{"url": "postgresql://u:pwProbe123@h/db"}')
    assert _files_with(tmp_path / "probe", "pwProbe123") == ["x.json"]


def test_a_password_in_command_line_urls_is_never_written(tmp_path, pg_databases):
    _check_search_finds_it(tmp_path)
    secret = _secret()
    source = _with_password(pg_databases(), secret)
    warehouse = _with_password(pg_databases(), secret)
    state, user_home = tmp_path / "state", tmp_path / "user"
    user_home.mkdir()
    env = {"HOME": str(user_home), "CRM_DBT_DOCS": "1"}
    made = crm("demo-data", "--source", source, "--customers", CUSTOMERS, "--until", AS_OF, "--home", str(state),
               env=env)
    assert made.returncode == 0, made.stderr
    assert "***" in made.stdout  # the source is named, with its password masked
    ran = crm("run", "--as-of", AS_OF, "--home", str(state), "--source", source, "--warehouse", warehouse, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (state / "docs" / "dbt" / "run_results.json").exists()  # dbt's artifacts were written and searched
    _assert_nowhere(secret, [made, ran], [state, user_home], warehouse.replace(secret, "x"))


def test_a_password_in_airflow_connection_variables_is_never_written(tmp_path, pg_databases):
    """The source as Airflow's JSON connection, the warehouse as a URI, in the environment;
    then a DuckDB warehouse with the same source."""
    secret = _secret()
    source_url = pg_databases()
    host_db = source_url.split("@", 1)[1]
    host, database = host_db.split("/", 1)
    source_json = json.dumps({"conn_type": "postgres", "host": host.split(":")[0], "port": 5432,
                              "login": "postgres", "password": secret, "schema": database})
    warehouse = _with_password(pg_databases(), secret)
    state, user_home = tmp_path / "state", tmp_path / "user"
    user_home.mkdir()
    env = {"HOME": str(user_home), "CRM_DBT_DOCS": "1", "AIRFLOW_CONN_CRM_SOURCE": source_json,
           "AIRFLOW_CONN_CRM_WAREHOUSE": warehouse}
    made = crm("demo-data", "--source", _with_password(source_url, secret), "--customers", CUSTOMERS,
               "--until", AS_OF, "--home", str(state), env={"HOME": str(user_home)})
    assert made.returncode == 0, made.stderr
    ran = crm("run", "--as-of", AS_OF, "--home", str(state), env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    _assert_nowhere(secret, [made, ran], [state, user_home], warehouse.replace(secret, "x"))

    duck_state = tmp_path / "duck"
    duck_env = {**env, "AIRFLOW_CONN_CRM_WAREHOUSE": f"duckdb:///{duck_state / 'warehouse.duckdb'}"}
    ran_duck = crm("run", "--as-of", AS_OF, "--home", str(duck_state), env=duck_env)
    assert ran_duck.returncode == 0, ran_duck.stdout + ran_duck.stderr
    _assert_nowhere(secret, [ran_duck], [duck_state, user_home], f"duckdb:///{duck_state / 'warehouse.duckdb'}")
