"""The ``crm`` command's entry point: a night (``crm run``, ``crm backfill``) goes to the
home's warm server when one runs (``crm serve``), every other command, and a night with
no usable server, to the command line in ``crm_pipeline.cli``.

This module is small on purpose and imports the standard library and the settings only:
a night handed to a warm server should not pay the 2 s of importing the command line it
does not run. The protocol with the server (``crm_pipeline.warm_server``) lives here too:
a request is one length-prefixed JSON message (the arguments, the environment, the
working folder) sent with the caller's standard input, output and error over a Unix
socket in the home (``SCM_RIGHTS``), so the night writes to the caller's terminal or
pipe as a cold run would. The server answers with JSON lines: ``accepted`` (or a reason
to run cold), then ``exit`` with the command's exit code. docs/design.md, "Warm nights".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from crm_pipeline import settings

if TYPE_CHECKING:  # pragma: no cover
    import subprocess

#: the commands a warm server runs; every other command runs in its own process
NIGHT_COMMANDS = ("run", "backfill")
#: the server's socket, in the home it serves
SOCKET_NAME = "serve.sock"
#: a Unix socket's path is limited to 108 bytes on Linux, with its terminating zero
MAX_SOCKET_PATH = 107
#: how long a client waits for the server to accept or refuse a request
ANSWER_TIMEOUT_S = 30.0
_LENGTH = struct.Struct("!I")


def socket_path(home: Path) -> Path:
    return home / SOCKET_NAME


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``argv`` (the last one wins)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def home_of(argv: list[str]) -> Path:
    """The home a night's arguments name, as ``crm_pipeline.cli`` resolves it."""
    given = option(argv, "--home")
    return Path(given).resolve() if given else settings.home()


# -- framing, shared with the server ------------------------------------------------


def send_message(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    framed = _LENGTH.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [framed], fds)
        framed = framed[sent:]
    if framed:
        sock.sendall(framed)


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One framed message and the descriptors that came with it; (None, []) at the end."""
    if max_fds:
        data, fds, _flags, _addr = socket.recv_fds(sock, 65536, max_fds)
    else:
        data, fds = sock.recv(65536), []
    data = bytearray(data)
    while len(data) < _LENGTH.size or len(data) < _LENGTH.size + _LENGTH.unpack_from(data)[0]:
        more = sock.recv(65536) if data else b""
        if not more:
            return None, fds
        data += more
    (length,) = _LENGTH.unpack_from(data)
    return json.loads(data[_LENGTH.size:_LENGTH.size + length]), fds


def answer(sock: socket.socket, message: dict) -> None:
    """One JSON line from the server to the client."""
    sock.sendall(json.dumps(message).encode() + b"\n")


def read_answer(reader) -> dict | None:
    line = reader.readline()
    return json.loads(line) if line else None


# -- the client ----------------------------------------------------------------------


def connect(home: Path) -> socket.socket | None:
    """A connection to the warm server of ``home``, or None when none listens."""
    path = socket_path(home)
    if len(str(path)) > MAX_SOCKET_PATH or not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:  # a socket left by a server that ended
        sock.close()
        return None
    return sock


def ask(home: Path, message: dict) -> dict | None:
    """Send a control message (``ping``, ``stop``) and return the server's one answer."""
    sock = connect(home)
    if sock is None:
        return None
    with sock:
        sock.settimeout(ANSWER_TIMEOUT_S)
        send_message(sock, message)
        with sock.makefile("rb") as reader:
            try:
                return read_answer(reader)
            except (OSError, ValueError):
                return None


def wait_until_serving(home: Path, process: subprocess.Popen, timeout: float) -> bool:
    """Wait until the warm server of ``home`` that ``process`` started answers a ping:
    True when it does, False when the process ended or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while ask(home, {"ping": True}) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def run_warm(home: Path, argv: list[str]) -> int | None:
    """Hand the night to the warm server of ``home``; its exit code, or None when there is
    no server or it refused (the reason is printed when the caller should know it)."""
    sock = connect(home)
    if sock is None:
        return None
    server: dict[str, int] = {}
    pending: list[int] = []

    def forward(signum, _frame):
        # the night runs in the server: an interrupt of this command interrupts it there;
        # one that comes before the server took the night is forwarded once it has
        if "pid" not in server:
            pending.append(signum)
            return
        try:
            os.kill(server["pid"], signal.SIGINT)
        except OSError:
            pass

    saved = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with sock, sock.makefile("rb") as reader:
        sock.settimeout(ANSWER_TIMEOUT_S)
        try:
            send_message(sock, {"night": argv, "env": dict(os.environ), "cwd": os.getcwd()}, [0, 1, 2])
            accepted = read_answer(reader)
        except (OSError, ValueError):
            accepted = None
        if not accepted or not accepted.get("accepted"):
            for signum, handler in saved.items():
                signal.signal(signum, handler)
            if accepted and accepted.get("say"):
                print(f"crm: {accepted['say']}", file=sys.stderr)
            if pending:  # interrupted before anything ran
                return 130
            return None
        server_pid = server["pid"] = int(accepted["pid"])
        if pending:
            forward(pending[0], None)
        sock.settimeout(None)
        try:  # a forwarded signal does not end the wait: the read resumes after the handler (PEP 475)
            done = read_answer(reader)
        except (OSError, ValueError):
            done = None
        if done is None or "exit" not in done:
            print(f"crm: the warm server of {home} ended during the night (PID {server_pid}); its log is "
                  f"{home / 'logs' / 'serve.log'}", file=sys.stderr)
            return 1
        return int(done["exit"])


def main() -> None:
    """``crm``: a night to the warm server when one serves its home, else the command line."""
    argv = sys.argv[1:]
    if argv and argv[0] in NIGHT_COMMANDS and not {"--help", "-h"} & set(argv):
        code = run_warm(home_of(argv), argv)
        if code is not None:
            sys.stdout.flush()
            os._exit(code)
    # the command line in a fresh interpreter, as `python -m crm_pipeline.cli` (same process)
    os.execv(sys.executable, [sys.executable, "-m", "crm_pipeline.cli", *argv])
