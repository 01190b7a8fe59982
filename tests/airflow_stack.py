"""Processes of a real Airflow stack for the tests that run one (scheduler, api-server,
workers): free ports, a clean environment, starting a component in its own process group,
waiting on it while it is alive, and stopping it with everything it started.

Why SIGINT first, and why the stack is started with SIGINT reset to the default, is told
in ``stop`` and ``default_sigint``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_BIN = str(Path(sys.executable).parent / "airflow")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def clean_env() -> dict[str, str]:
    """This process's environment without Airflow or crm settings; the venv's bin first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CRM_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"CRM_DBT_DOCS": "0", "COLUMNS": "200", "GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1",
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"})
    return env


def base_env(home: Path) -> dict[str, str]:
    """What every Airflow process of a test stack needs for ``home``: a clean environment,
    the DAGs folder, the api-server on a free loopback port (task processes talk to its
    execution API; its default is port 8080), the worker log server on a free port (8793
    by default), generous parse timeouts for a busy 2-core machine, no scheduled runs
    (only the runs a test makes), and the pipeline's state folder. Each test adds its
    metadata database and executor."""
    airflow_home = home / "airflow"
    api_port, worker_logs_port = free_ports(2)
    return {
        **clean_env(),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs_port),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos-cache"),
        "AIRFLOW__COSMOS__ENABLE_CACHE": "True",
        "CRM_HOME": str(home),
    }


def default_sigint() -> None:
    # runs in the child before exec: a SIGINT ignored by the parent would stay ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=default_sigint)


def group_members(pgid: int) -> dict[int, str]:
    """The live (not zombie) processes of a process group: pid -> "state command"."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, _ppid, group = stat[stat.rindex(")") + 2:].split()[:3]
            if int(group) == pgid and state != "Z":
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                members[int(entry.name)] = f"{state} {cmd[:100]}"
        except (OSError, ValueError):
            continue
    return members


def signal_all(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def stop(proc: subprocess.Popen | None, grace: float, spare_leader: bool = False) -> list[str]:
    """Stop a process started by ``start`` and everything in its process group; returns the
    escalations that were needed (SIGTERM, then SIGKILL to whatever was left).

    SIGINT goes first. With ``spare_leader`` it goes to the members of the group but not to
    its leader, and to the leader only once the others have exited: ``airflow standalone``
    answers SIGINT by sending SIGTERM to its components at once, and a triggerer that gets
    SIGTERM while still shutting down after SIGINT takes its "second signal, force exit"
    path, which hung in about half of the tries here (Airflow 3.3.2) until SIGKILL.
    """
    if proc is None:
        return []
    pgid = proc.pid  # start_new_session: the process leads its own group
    gone = lambda: not group_members(pgid) and proc.poll() is not None  # noqa: E731
    escalated = []
    if spare_leader and proc.poll() is None:
        signal_all([pid for pid in group_members(pgid) if pid != pgid], signal.SIGINT)
        wait_until(lambda: set(group_members(pgid)) <= {pgid}, grace)
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if gone():
            break
        if sig != signal.SIGINT:
            escalated.append(f"{signal.Signals(sig).name} to {group_members(pgid)}")
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        wait_until(gone, wait)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    return escalated


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait(what: str, check, timeout: float, procs_and_logs: list[tuple[subprocess.Popen, Path]]):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        for proc, log in procs_and_logs:
            assert proc.poll() is None, f"{' '.join(map(str, proc.args[:3]))} exited ({proc.returncode}) " \
                                        f"while waiting for {what}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}:\n" + \
            "\n".join(tail(log) for _, log in procs_and_logs)
        time.sleep(2)
