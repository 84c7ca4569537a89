"""SIGINT, SIGTERM and SIGKILL during predict and vectorize never leave a file under the final
name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from geoseg.io.atomic import remove_stale
from geoseg.io.writer import verify_cog
from tests.conftest import REPO, write_raster
from tests.faults.conftest import rgb

pytestmark = pytest.mark.slow


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "geoseg", "-q", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_temporary(folder: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(".partial" in p.name for p in folder.iterdir()):
            return
        if proc.poll() is not None:
            pytest.fail(f"finished before it could be interrupted: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no temporary output appeared")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def big_scene(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    return write_raster(
        tmp_path / "in" / "scene.tif", rgb(2048, 2048)
    )  # long enough to be caught mid-run


@pytest.fixture
def big_mask(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, size=(1, 2048, 2048), dtype=np.uint8)
    return write_raster(tmp_path / "in" / "mask.tif", mask)


def exit_status(proc: subprocess.Popen[str], err: str) -> str:
    """A process's exit status as a person reads it: ``130``, or ``SIGSEGV`` for a crash."""
    rc = proc.returncode
    shown = signal.Signals(-rc).name if rc < 0 else str(rc)
    return f"exit {shown}; stderr: {err[-2000:]}"


def assert_interrupted(sig: signal.Signals, proc: subprocess.Popen[str], err: str) -> None:
    """The exit status first: SIGKILL kills; SIGINT and SIGTERM end in the one-line message and
    130, never in a crash (a negative status names the signal that killed it)."""
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, exit_status(proc, err)
        return
    assert proc.returncode == 130, exit_status(proc, err)
    assert "Interrupted: " in err and "Traceback" not in err, err
    assert "no output was left half-written" in err


PREDICT_OUTPUTS = ("mask.tif", "conf.tif", "mask.gpkg", "mask.png")


def predict_args(scene: Path, ckpt: Path) -> list[str]:
    return [
        "predict", str(scene), "out/mask.tif", "--model", str(ckpt), "--precision", "fp32",
        "--confidence", "out/conf.tif", "--vector", "out/mask.gpkg", "--quicklook", "out/mask.png",
    ]  # fmt: skip


def assert_all_or_nothing(out: Path) -> bool:
    """Every output of the run is there and whole, or none is (side files aside); True when all
    are there."""
    there = [n for n in PREDICT_OUTPUTS if (out / n).exists()]
    assert there in ([], list(PREDICT_OUTPUTS)), f"published by halves: {_names(out)}"
    if there:
        verify_cog(out / "mask.tif")
        verify_cog(out / "conf.tif")
        assert len(gpd.read_file(out / "mask.gpkg")) > 0
    return bool(there)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_predict_interrupted(
    sig: signal.Signals, big_scene: Path, ckpt: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = _start(predict_args(big_scene, ckpt), tmp_path)
    _wait_for_temporary(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert_interrupted(sig, proc, err)
    if assert_all_or_nothing(out):
        return  # the signal came as the outputs were published: all of them are whole
    if sig == signal.SIGKILL:  # nothing can clean up after SIGKILL: the next run does
        for name in PREDICT_OUTPUTS:
            remove_stale(out / name)
    assert [n for n in _names(out) if not n.endswith(".qml")] == []


# Runs geoseg with os.replace wrapped: right after the first output is renamed onto its final
# name, the process sends itself the signal: deterministically between two publications.
BETWEEN_PUBLICATIONS = """
import os, signal, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    real(src, dst, *args, **kwargs)
    if str(dst).endswith({names!r}):
        os.replace = real
        os.kill(os.getpid(), {sig})
os.replace = replace
sys.argv = ["geoseg", *sys.argv[1:]]
from geoseg.cli import main
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_between_two_publications_publishes_the_whole_run(
    sig: signal.Signals, ckpt: Path, tmp_path: Path
) -> None:
    """The outputs of one run appear together: a signal that lands after the first of them is
    renamed into place waits until the last one is, then ends the run."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    scene = write_raster(tmp_path / "in" / "scene.tif", rgb(200, 200))
    code = BETWEEN_PUBLICATIONS.format(names=PREDICT_OUTPUTS, sig=int(sig))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "-q", *predict_args(scene, ckpt)],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert_interrupted(sig, proc, err)
    assert assert_all_or_nothing(tmp_path / "out")
    assert [n for n in _names(tmp_path / "out") if ".partial" in n] == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_vectorize_interrupted(sig: signal.Signals, big_mask: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = _start(
        ["vectorize", str(big_mask), "out/polygons.gpkg", "--block-size", "64", "--keep-all"],
        tmp_path,
    )
    _wait_for_temporary(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert_interrupted(sig, proc, err)
    assert "GeneratorExit" not in err
    if sig != signal.SIGKILL and "polygons.gpkg" in _names(
        out
    ):  # published just before the signal: whole
        assert len(gpd.read_file(out / "polygons.gpkg")) > 0
        return
    assert "polygons.gpkg" not in _names(out)
    if sig == signal.SIGKILL:
        remove_stale(out / "polygons.gpkg")
    assert _names(out) == []


# A signal that lands once the command is over, while the interpreter shuts down (joining
# threads, running atexit): Python would raise KeyboardInterrupt where nothing catches it and end
# by killing itself with SIGINT, a crash to whoever waits for the process.
AFTER_THE_COMMAND = """
import os, signal, sys, threading, time
sys.argv = ["geoseg", "--version"]
from geoseg.__main__ import main
def late():
    time.sleep(0.5)
    os.kill(os.getpid(), {sig})
threading.Thread(target=late).start()  # not a daemon: shutdown waits for it
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_the_command_ends_it_with_130(sig: signal.Signals) -> None:
    done = subprocess.run(
        [sys.executable, "-c", AFTER_THE_COMMAND.format(sig=int(sig))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout.startswith("geoseg"), done


def test_the_processes_the_tests_start_can_be_interrupted() -> None:
    """Ctrl-C reaches the processes the suite starts, however the suite itself was started (a
    background job inherits it ignored): otherwise every SIGINT test here would pass untested."""
    shown = subprocess.run(
        [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT).__name__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert shown == "default_int_handler"


# An interrupted command whose process still holds cleanups: the temporary folders (tempfile's
# and the app's work folder) go, the other exit handlers (torch's, pybind11's...) do not run, as
# they free native state a thread of the command may still be using.
INTERRUPTED_END = """
import atexit, sys, tempfile
from pathlib import Path
from geoseg.__main__ import _end_interrupted
from geoseg.app.workspace import Workspace
kept = tempfile.TemporaryDirectory(prefix="geoseg-test-")
space = Workspace(root=Path(sys.argv[1]))
marker = Path(sys.argv[1]) / "foreign-exit-handler-ran"
atexit.register(marker.touch)
print(kept.name, space.root, flush=True)
_end_interrupted()
"""


def test_an_interrupted_end_removes_temporary_folders_and_skips_other_exit_handlers(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_END, str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 130, (done.returncode, done.stderr)
    folders = [Path(p) for p in done.stdout.split()]
    assert len(folders) == 2 and not any(p.exists() for p in folders), done.stdout
    assert not (tmp_path / "foreign-exit-handler-ran").exists()
