"""Execute one notebook at smoke size and save it with its outputs: ``python -m
tests.notebooks.run_notebook NOTEBOOK EXECUTED [FIGURES]``. A process of its own, so that notebooks
can run side by side. With ``FIGURES``, a first cell hooks matplotlib in the kernel and every figure
drawn is checked and saved there (``figures.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(source: str, executed: str, figures: str | None = None) -> None:
    path = Path(source)
    nb = nbformat.read(path, as_version=4)
    if figures:
        hook = f"import tests.notebooks.figures\ntests.notebooks.figures.install({figures!r})"
        nb.cells.insert(0, nbformat.v4.new_code_cell(hook))
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        shutdown_kernel="immediate",  # a polite shutdown waits seconds for threads the run left
    )
    try:
        client.execute()
    finally:  # an error cell is kept in the saved notebook, where the test reads it
        if figures:
            nb.cells.pop(0)
        nbformat.write(nb, executed)


if __name__ == "__main__":
    main(*sys.argv[1:4])
