"""Every notebook runs top to bottom at smoke size, offline, and is committed without outputs."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
nbformat = pytest.importorskip(
    "nbformat", reason="notebook tests need the dev extra (nbformat, nbclient, ipykernel)"
)
if TYPE_CHECKING:
    from tests.notebooks.background import Run


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} hold outputs; strip them (nbstripout {path.name})"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs_at_smoke_size(path: Path, runs: dict[str, Future[Run]]) -> None:
    """Started in the background at collection (``conftest.py``); waited for here."""
    run = runs[path.stem].result()
    assert run.notebook is not None, run.stderr
    nb = run.notebook
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert not errors, "\n".join(f"{e.get('ename')}: {e.get('evalue')}" for e in errors)
    assert run.returncode == 0, run.stderr
    figures = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    )
    print(f"{path.stem}: {run.seconds:.1f} s, {figures} figures")  # shown with -rP
    if os.environ.get("GEOSEG_KEEP_NOTEBOOKS"):  # the executed notebook and its figures' PNGs
        keep = Path(os.environ["GEOSEG_KEEP_NOTEBOOKS"])
        nbformat.write(nb, keep / path.name)
        if (run.folder / "figures").is_dir():
            shutil.copytree(run.folder / "figures", keep / path.stem, dirs_exist_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_figure_shows_something(path: Path, runs: dict[str, Future[Run]]) -> None:
    """No blank or flat panel, no all-NaN array, no colour limits that clip nearly everything
    (``figures.py`` checks each figure in the notebook's kernel as it is drawn)."""
    run = runs[path.stem].result()
    drawn = sum(
        1
        for c in (run.notebook.cells if run.notebook else [])
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    )
    assert len(run.figures) >= drawn, f"{len(run.figures)} figures checked, {drawn} drawn"
    bad = [
        f"figure {r['figure']} (cell {r['cell']}) panel {p['panel']} {p['title']!r}: {p['problem']}"
        for r in run.figures
        for p in r["problems"]
    ]
    assert not bad, "\n".join(bad)
