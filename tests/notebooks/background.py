"""Notebooks run in the background, side by side, each in a process of its own
(``run_notebook.py``), one thread each and at a lower priority than the test process, so that they
use the CPU time the rest of the suite leaves idle without slowing it down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from tests.conftest import REPO, SHARED_DATA
from tests.notebooks.figures import read_records

PARALLEL = 2  # kernels at once
NICENESS = 10
# the longest first, so that the last to start are short
LONGEST = ("09_scaling", "02_training", "05_diagnostics", "06_explain_export", "08_app")


@dataclass
class Run:
    seconds: float
    returncode: int
    stderr: str
    notebook: Any  # the executed notebook, with its outputs (and the error cell, if one failed)
    figures: list[dict[str, Any]]  # one record per figure drawn, with its problems (figures.py)
    folder: Path  # the run's outputs, figures/figure-N.png among them


class Background:
    """Runs notebooks at smoke size, at most ``parallel`` at once, in the background."""

    def __init__(self, notebooks: list[Path], root: Path, parallel: int = PARALLEL) -> None:
        self.root = root
        self._procs: list[subprocess.Popen[str]] = []
        self._closed = False
        order = sorted(notebooks, key=lambda p: LONGEST.index(p.stem) if p.stem in LONGEST else 99)
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="notebook")
        self.runs: dict[str, Future[Run]] = {p.stem: self._pool.submit(self._run, p) for p in order}

    def close(self) -> None:
        """Cancel what has not started and stop what runs (an interrupted session)."""
        self._closed = True
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, path: Path) -> Run:
        if self._closed:
            raise RuntimeError("the test session ended first")
        folder = self.root / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        executed = folder / path.name
        env = {
            **os.environ,
            "GEOSEG_SMOKE": "1",
            "TQDM_DISABLE": "1",
            "GEOSEG_NOTEBOOK_OUT": str(folder),
            "GEOSEG_CACHE_DIR": str(self.root / "model-cache"),  # not the user's cache
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
        }
        if "GEOSEG_DATA" not in env and SHARED_DATA.is_dir():
            env["GEOSEG_DATA"] = str(SHARED_DATA)  # the Dubai set, the SpaceNet 6 crops
        start = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.notebooks.run_notebook",
                str(path),
                str(executed),
                str(folder / "figures"),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: os.nice(NICENESS),
        )
        self._procs.append(proc)
        try:
            _, stderr = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        seconds = time.perf_counter() - start
        notebook = nbformat.read(executed, as_version=4) if executed.exists() else None
        figures = read_records(folder / "figures")
        return Run(seconds, proc.returncode, stderr[-3000:], notebook, figures, folder)
