"""``crm docs``: serve the home's docs (dbt docs, Data Docs) on a local port and print
their addresses; stops with Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crm_pipeline import docs_site
from crm_pipeline.cli_common import UserError, _guard, _home, console

PAGES = (("dbt docs", "dbt/index.html"), ("data docs", "gx/index.html"))


@_guard
def docs(
    home: Optional[Path] = typer.Option(None, "--home", help="State folder (default ./.crm)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to serve on (0: a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
) -> None:
    """Serve the dbt docs and the Data Docs of the last run over HTTP."""
    folder = _home(home) / "docs"
    found = [(name, page) for name, page in PAGES if (folder / page).exists()]
    if not found:
        raise UserError(f"no docs in {folder} yet", "run `crm run` first (it writes the dbt docs and the Data Docs)")
    try:
        httpd = docs_site.server(folder, host, port)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", "pass another --port (0: any free one)") \
            from None
    bound = httpd.server_address[1]
    for name, page in found:
        console.print(f"{name + ':':11}http://{host}:{bound}/{page}", highlight=False)
    console.print("serving; Ctrl-C stops", highlight=False)
    console.file.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        httpd.server_close()
