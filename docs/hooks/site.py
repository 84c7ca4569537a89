"""MkDocs hooks of the geoseg site.

- The notebooks of notebooks/ become pages under notebooks/, rendered by mkdocs-jupyter as they
  are committed (without outputs; never executed by the build).
- The option tables mkdocs-click generates show click's "no default" marker (``Sentinel.UNSET``
  since click 8.3) as a dash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]
NO_DEFAULT = "<code>Sentinel.UNSET</code>"


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files: Files, config: Any) -> Files:
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(REPO),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def on_page_content(html: str, **kwargs: Any) -> str:
    return html.replace(NO_DEFAULT, "&ndash;")
