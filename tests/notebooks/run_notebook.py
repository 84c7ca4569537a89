"""Execute one notebook at smoke size and save it with its outputs: ``python -m
tests.notebooks.run_notebook NOTEBOOK EXECUTED``. A process of its own, so that notebooks can run
side by side."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(source: str, executed: str) -> None:
    path = Path(source)
    nb = nbformat.read(path, as_version=4)
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
        nbformat.write(nb, executed)


if __name__ == "__main__":
    main(*sys.argv[1:3])
