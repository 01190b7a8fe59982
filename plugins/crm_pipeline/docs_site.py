"""The docs a run writes under ``<home>/docs``, made to open anywhere, and served by
``crm docs``:

* the dbt docs carry their manifest and catalog inside ``index.html`` (dbt's static
  mode), so the page opens from disk as well as over HTTP, and the marts that are
  published are shown under their published names (schema ``published``);
* the Great Expectations Data Docs use the stylesheets, scripts and fonts shipped in
  ``expectations/data_docs_assets`` (copied next to the pages) instead of CDNs, and
  their logo from the site's own images, so they render offline.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from crm_pipeline.settings import EXPECTATIONS_DIR

VENDORED = EXPECTATIONS_DIR / "data_docs_assets"
#: each CDN address the Data Docs pages use, and the shipped file that replaces it
CDN_ASSETS = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark/bootstrap-prefers-dark.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega/vega-embed.min.js",
}
#: the logo Data Docs fetch from a remote bucket with a tracking query; the site holds it
REMOTE_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"']*/logo-long\.png[^\"']*")
SITE_LOGO = "static/images/logo-long.png"
#: any address outside the machine that a page would load (links to read are not loaded)
REMOTE_LOAD = re.compile(r"""(?:src|href)=["'](https?://[^"']+\.(?:css|js)[^"']*|https?://cdn[^"']+)["']""")


# -- dbt docs ------------------------------------------------------------------------


def _published_schema(relation: str | None, schema: str) -> str | None:
    if not relation:
        return relation
    return re.sub(rf'(^|\.)("?){re.escape(schema)}("?)\.', r'\1\2published\3.', relation, count=1)


def publish_names(target_dir: Path, published: set[str]) -> None:
    """Show each published mart under its published name in the generated docs."""
    manifest_path, catalog_path = target_dir / "manifest.json", target_dir / "catalog.json"
    manifest = json.loads(manifest_path.read_text())
    renamed: set[str] = set()
    for unique_id, node in manifest.get("nodes", {}).items():
        alias = node.get("alias") or node.get("name")
        if node.get("resource_type") != "model" or alias not in published or node.get("schema") == "published":
            continue
        node["relation_name"] = _published_schema(node.get("relation_name"), node["schema"])
        node["schema"] = "published"
        lead = f"Published as published.{alias}."
        if not node.get("description", "").startswith(lead):
            node["description"] = f"{lead} {node.get('description', '')}".strip()
        renamed.add(unique_id)
    manifest_path.write_text(json.dumps(manifest))
    if catalog_path.exists():
        catalog = json.loads(catalog_path.read_text())
        for unique_id in renamed & set(catalog.get("nodes", {})):
            catalog["nodes"][unique_id]["metadata"]["schema"] = "published"
        catalog_path.write_text(json.dumps(catalog))


def inline_index(target_dir: Path, template: Path) -> Path:
    """``index.html`` with the manifest and catalog inside (dbt's static mode): it opens
    from disk, where a browser refuses to fetch the two files next to it."""
    def embedded(name: str) -> str:
        return (target_dir / name).read_text().replace("</", "<\\/")

    page = template.read_text()
    page = page.replace('"MANIFEST.JSON INLINE DATA"', embedded("manifest.json"))
    page = page.replace('"CATALOG.JSON INLINE DATA"', embedded("catalog.json"))
    index = target_dir / "index.html"
    index.write_text(page)
    return index


# -- Data Docs -----------------------------------------------------------------------


def localise_data_docs(site_dir: Path, written_since: float = 0.0) -> int:
    """Point the Data Docs pages at the shipped assets; returns how many pages changed.

    ``written_since`` (a time.time()): only the pages written since then, the ones a build
    just wrote, so a night does not read again every page of every earlier night."""
    vendor = site_dir / "static" / "vendor"
    shutil.copytree(VENDORED, vendor, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
    changed = 0
    for page in site_dir.rglob("*.html"):
        if written_since and page.stat().st_mtime < written_since:
            continue
        text = page.read_text()
        base = os.path.relpath(site_dir, page.parent)
        new = text
        for address, asset in CDN_ASSETS.items():
            new = new.replace(address, f"{base}/static/vendor/{asset}")
        new = REMOTE_LOGO.sub(f"{base}/{SITE_LOGO}", new)
        if new != text:
            page.write_text(new)
            changed += 1
    return changed


def remote_loads(site_dir: Path) -> list[str]:
    """Addresses outside the machine that the site's pages would still load."""
    found: set[str] = set()
    for page in site_dir.rglob("*.html"):
        found.update(REMOTE_LOAD.findall(page.read_text()))
    return sorted(found)


# -- serving -------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass


def server(docs_dir: Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``docs_dir`` (port 0: a free one); call ``serve_forever``."""
    return ThreadingHTTPServer((host, port), functools.partial(_QuietHandler, directory=str(docs_dir)))
