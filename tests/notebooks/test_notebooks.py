"""Every notebook runs top to bottom at smoke size, offline, and is committed without outputs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
nbformat = pytest.importorskip(
    "nbformat", reason="notebook tests need the dev extra (nbformat, nbclient, ipykernel)"
)


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
def test_runs_at_smoke_size(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("GEOSEG_SMOKE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("GEOSEG_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    seconds = time.perf_counter() - start
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert not errors
    figures = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    )
    print(
        f"{path.stem}: {seconds:.1f} s, {figures} figures"
    )  # shown with -rP / in the durations table
    if os.environ.get("GEOSEG_KEEP_NOTEBOOKS"):
        nbformat.write(nb, Path(os.environ["GEOSEG_KEEP_NOTEBOOKS"]) / path.name)
