"""``crm serve``: a process that keeps a home's nights warm. It loads Airflow, dbt, Great
Expectations and the DAG once, then runs each night it is handed (``crm run``,
``crm backfill`` through ``crm_pipeline.warm_client``) in itself, one at a time, the way
``crm backfill`` runs its dates: a night no longer pays the imports and Airflow's first
task, and the libraries' own caches stay filled between nights. Every
``RENEW_AFTER_NIGHTS`` nights, after an interrupted night and when its code changed, it
renews itself: the same process loads afresh (``exec``), so what nights leave in memory
does not pile up and an upgrade is picked up.

A night runs on its caller's standard input, output and error, in its caller's
environment and working folder, and answers with its exit code, so it behaves as a cold
``crm run``: same progress, summary, log, run record and home lock. The server refuses a
night, and the client runs it in its own process instead, when the server cannot run it
as a new process would: the package's code or the installed libraries changed since it
started (the server then renews itself), settings read when Airflow or the package are
imported differ, the night runs on Spark, or a night is already running (the client then
meets the home lock, as a second cold run does).
docs/design.md, "Warm nights".
"""

from __future__ import annotations

import gc
import hashlib
import os
import queue
import signal
import socket
import struct
import sys
import sysconfig
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from crm_pipeline import airflow_local, cli_common, interrupts, settings
from crm_pipeline.cli_common import UserError
from crm_pipeline.connections import WAREHOUSE_CONN_ID, redact
from crm_pipeline.warm_client import (MAX_SOCKET_PATH, answer, ask, option, receive_message, socket_path)

PACKAGE_DIR = Path(__file__).resolve().parent
#: settings read once, when Airflow or the package are imported: a night whose environment
#: sets them otherwise than the server's runs in its own process
IMPORT_TIME_PREFIXES = ("AIRFLOW__",)
IMPORT_TIME_NAMES = ("CRM_DBT_PROJECT_DIR", "CRM_EXPECTATIONS_DIR", "PYTHONPATH")
#: exit code of an interrupted command; the server renews itself after it rather than
#: trust what a half-run night left in its memory
INTERRUPTED = 130
#: nights after which the server renews itself: each night leaves a few MB in the process
#: (about 5 MB a night of the 5,000-customer demo), and a year of nights should not
RENEW_AFTER_NIGHTS = 50
_STOP = object()


def code_stamp() -> str:
    """What the server's loaded code was made of: every source file of the package and the
    DAG (name, size, last change) and the installed libraries (each one's name and version,
    as its ``.dist-info`` folder says; not the folder's own time, which Python's bytecode
    cache also changes)."""
    files = sorted([*PACKAGE_DIR.rglob("*.py"), *settings.DAGS_DIR.glob("*.py")])
    stamp = hashlib.sha256()
    for path in files:
        info = path.stat()
        stamp.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    libraries = Path(sysconfig.get_paths()["purelib"])
    stamp.update("\n".join(sorted(p.name for p in libraries.glob("*.dist-info"))).encode())
    return stamp.hexdigest()


def import_time_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES) or k in IMPORT_TIME_NAMES}


class WarmServer:
    """The socket, the thread that answers on it and the main thread's nights."""

    def __init__(self, home: Path, run_command: Callable[[list[str]], int], say: Callable[[str], None]):
        self.home = home
        self.run_command = run_command
        self.say = say
        self.log_path = home / "logs" / "serve.log"
        self.nights = 0
        self.busy = threading.Event()
        self.night_running = False  # SIGINT raises KeyboardInterrupt only while a night runs
        self.requests: queue.Queue = queue.Queue()
        self.stopping = False
        #: set when the server should load afresh in the same process once it stops serving
        self.renewing = False
        #: the environment it was started with, before the home's Airflow settings
        self.started_env = dict(os.environ)
        self.started_at = datetime.now(timezone.utc)
        self.env = import_time_settings(dict(os.environ))
        self.stamp = code_stamp()
        self.sock: socket.socket | None = None

    # -- the server's life -------------------------------------------------------------

    def start(self) -> float:
        """Load what a night needs and listen; returns the seconds it took."""
        started = time.perf_counter()
        path = socket_path(self.home)
        if len(str(path)) > MAX_SOCKET_PATH:
            raise UserError(f"the home's path is too long for a socket ({len(str(path))} of {MAX_SOCKET_PATH} "
                            "characters)", "use a home with a shorter path")
        running = ask(self.home, {"ping": True})
        if running is not None:
            raise UserError(f"a warm server already serves {self.home} (PID {running.get('pid')})",
                            "stop it first with `crm serve --stop`, or use it: `crm run` finds it")
        path.unlink(missing_ok=True)  # a socket left by a server that was killed
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        airflow_local.configure(self.home, None, None)
        with airflow_local.output_to(self.log_path):  # the libraries' chatter while they load
            airflow_local.prepare()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)  # the socket is its owner's only
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(umask)
        self.sock.listen(8)
        threading.Thread(target=self._accept, name="crm-serve-accept", daemon=True).start()
        seconds = time.perf_counter() - started
        self._log(f"ready: PID {os.getpid()}, loaded in {seconds:.1f} s")
        return seconds

    def run(self) -> None:
        """Serve nights until stopped (``crm serve --stop``, SIGTERM, Ctrl-C), or until it
        renews itself: then the same process loads afresh."""
        signal.signal(signal.SIGTERM, self._terminate)
        try:
            while not self.stopping:
                item = self.requests.get()
                if item is _STOP:
                    break
                self._serve(*item)
        except KeyboardInterrupt:
            self.renewing = False
        finally:
            self.close()
        if self.renewing:
            _flush()
            os.execve(sys.executable, [sys.executable, "-m", "crm_pipeline.cli", "serve", "--home", str(self.home)],
                      self.started_env)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            socket_path(self.home).unlink(missing_ok=True)
            self._log(f"{'renews itself' if self.renewing else 'stopped'} after {self.nights} night(s)")

    def _terminate(self, _signum, _frame) -> None:
        self.stopping = True
        self.renewing = False
        raise SystemExit(143)

    def _log(self, line: str) -> None:
        stamped = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC  {line}"
        with open(self.log_path, "a") as log:
            log.write(stamped + "\n")
        self.say(f"crm serve: {line}")

    # -- the acceptor thread: answers at once, hands nights to the main thread ---------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (OSError, AttributeError):  # closed: the server ends
                return
            fds: list[int] = []
            try:
                _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                if uid != os.getuid():
                    conn.close()
                    continue
                conn.settimeout(10)
                message, fds = receive_message(conn, max_fds=3)
                handed = self._dispatch(conn, message, fds)
            except (OSError, ValueError):
                handed = False
            if not handed:
                for fd in fds:
                    os.close(fd)
                conn.close()

    def _dispatch(self, conn: socket.socket, message: dict | None, fds: list[int]) -> bool:
        """Answer a control message, or queue a night; True when the main thread took it."""
        if not message:
            return False
        if "ping" in message:
            answer(conn, {"pid": os.getpid(), "home": str(self.home), "nights": self.nights,
                          "busy": self.busy.is_set(), "since": self.started_at.isoformat()})
        elif "stop" in message:
            answer(conn, {"stopping": True, "pid": os.getpid(), "busy": self.busy.is_set()})
            self.renewing = False
            self.requests.put(_STOP)
        elif "night" in message and len(fds) == 3:
            if self.busy.is_set():
                answer(conn, {"accepted": False})  # the client runs it and meets the home lock
                return False
            self.busy.set()
            conn.settimeout(None)
            self.requests.put((conn, message, fds))
            return True
        else:
            answer(conn, {"accepted": False, "say": "the warm server did not understand the request"})
        return False

    # -- the main thread: one night ------------------------------------------------------

    def _interrupt(self, _signum, _frame) -> None:
        """SIGINT during a night (the client forwards its caller's Ctrl-C): recorded, so
        that the night stops at its next stage even if a library catches the
        KeyboardInterrupt raised here (interrupts.py)."""
        interrupts.request()
        if self.night_running:
            raise KeyboardInterrupt

    def _refusal(self, night: list[str], env: dict[str, str]) -> tuple[str, bool] | None:
        """Why this night runs in its own process instead, and whether the server renews itself."""
        if code_stamp() != self.stamp:
            return (f"the warm server of {self.home} started before the code or the libraries changed: it "
                    "reloads, and this night runs in its own process"), True
        if import_time_settings(env) != self.env:
            changed = sorted(set(import_time_settings(env).items()) ^ set(self.env.items()))
            return (f"this night's environment sets {changed[0][0]} otherwise than the warm server of {self.home}: "
                    "it runs in its own process"), False
        warehouse = option(night, "--warehouse") or env.get(f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}", "")
        if warehouse.strip().startswith("spark:"):
            return "a night on Spark runs in its own process, not in the warm server", False
        return None

    def _serve(self, conn: socket.socket, message: dict, fds: list[int]) -> None:
        night, env = list(message["night"]), dict(message.get("env") or {})
        code: int | None = None
        started = time.perf_counter()
        try:
            refusal = self._refusal(night, env)
            if refusal is not None:
                self._log(f"refused `crm {' '.join(redact(a) for a in night)}`: {refusal[0]}")
                answer(conn, {"accepted": False, "say": refusal[0]})
                if refusal[1]:
                    self.stopping = self.renewing = True
                return
            interrupts.clear()
            previous = signal.signal(signal.SIGINT, self._interrupt)
            try:
                answer(conn, {"accepted": True, "pid": os.getpid()})
                self.night_running = True
                code = self._run(night, env, str(message.get("cwd") or self.home), fds)
            except KeyboardInterrupt:  # the caller's Ctrl-C before or after the command itself
                code = INTERRUPTED
            finally:
                self.night_running = False
                signal.signal(signal.SIGINT, previous)
            if interrupts.requested() and code != INTERRUPTED:
                # a library caught the interrupt and the night went on (to its next stage, or
                # its end): it is still an interrupted night, and the server renews itself
                os.write(fds[2], f"interrupted (the night ended with {code}): the published tables are "
                                 "unchanged unless the publish step had finished\n".encode())
                code = INTERRUPTED
            self.nights += 1
            self._log(f"`crm {' '.join(redact(a) for a in night)}` ended with {code} in "
                      f"{time.perf_counter() - started:.1f} s")
            if code == INTERRUPTED or self.nights % RENEW_AFTER_NIGHTS == 0:
                self._log("the night was interrupted: the server renews itself" if code == INTERRUPTED
                          else f"{self.nights} nights served: the server renews itself")
                self.stopping = self.renewing = True
            answer(conn, {"exit": code})
        except OSError:  # the client went away; the night, if it ran, is in the run record
            pass
        finally:
            for fd in fds:
                os.close(fd)
            conn.close()
            self.busy.clear()

    def _run(self, night: list[str], env: dict[str, str], cwd: str, fds: list[int]) -> int:
        """The command in this process, on the caller's descriptors, environment and folder."""
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        saved_fds = [os.dup(n) for n in (0, 1, 2)]
        _flush()
        try:
            os.environ.clear()
            os.environ.update(env)
            for n, fd in enumerate(fds):
                os.dup2(fd, n)
            cli_common.refresh_consoles()
            try:
                os.chdir(cwd)
            except OSError as exc:
                cli_common.err.print(f"[red]error:[/] the working folder is gone: {exc.strerror}")
                return 1
            return self.run_command(night)
        finally:
            _flush()
            for n, fd in enumerate(saved_fds):
                os.dup2(fd, n)
                os.close(fd)
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            cli_common.refresh_consoles()
            gc.collect()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def serve(home: Path, run_command: Callable[[list[str]], int], say: Callable[[str], None]) -> None:
    """Run a warm server for ``home`` in the foreground until it is stopped."""
    server = WarmServer(home, run_command, say)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    server.run()


def stop(home: Path) -> dict | None:
    """Ask the warm server of ``home`` to stop after its night; None when none runs."""
    return ask(home, {"stop": True})
