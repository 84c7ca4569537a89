"""The fault matrix: every command that writes, under every fault a user's bad day brings.

A row is a writer: its command line, the files it publishes, and what it may keep on purpose when
interrupted (a training run's resume state). A column is a fault: a full disk (at several
free-space points, measured from the writer's own clean run), a read-only folder, two runs writing
one path at once, SIGTERM and SIGINT, and ``kill -9`` followed by a rerun. Every cell runs the real
command in a fresh process and asserts, exit status first:

- the documented exit status (1 for a refusal, 130 for an interrupt, 0 when the run finished
  before the signal) and, for a refusal, one line naming the cause;
- nothing under any final name unless every output of the run is there and whole;
- the inputs unchanged;
- no temporary file left once the run (or its rerun, after ``kill -9``) is over.

A new writer joins by adding a row to :data:`WRITERS`. The full disk and the read-only folder need
a tmpfs mount (root; CI runs as root), and skip with a reason without one. The suite runs one
free-space point; ``make stress`` runs three (``GEOSEG_FAULT_MATRIX=full``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from geoseg.models.checkpoint import read_config, rewrite_checkpoint
from geoseg.models.variants import Int8Variant
from tests.conftest import REPO, write_raster
from tests.faults.conftest import small_disk, tiny_checkpoint

pytestmark = pytest.mark.slow

Args = Callable[["Inputs", Path], list[str]]


@dataclass(frozen=True)
class Inputs:
    folder: Path
    scene: Path
    ckpt: Path
    mask: Path
    images: Path
    labels: Path


@dataclass(frozen=True)
class Writer:
    """One row: a command that writes.

    Attributes:
        name: the row's name.
        args: the command line (after ``geoseg``) writing into the output folder.
        outputs: what it publishes, relative to the output folder (a folder output names the file
            that says the run finished, e.g. ``eval/metrics.json``).
        keeps: what it may leave on purpose when interrupted (resume state).
        rerun: what its rerun adds to replace what a killed run finished.
        resume: what its rerun adds to go on from the resume state a failed run kept (the
            run's own advice: "pass --resume to continue it").
    """

    name: str
    args: Args
    outputs: tuple[str, ...]
    keeps: tuple[str, ...] = field(default=())
    rerun: tuple[str, ...] = ("--overwrite",)
    resume: tuple[str, ...] = ()


def _train(i: Inputs, out: Path) -> list[str]:
    return [
        "train", f"data.root={i.folder}", "data.kind=geotiff", "data.patch_size=32",
        "data.samples_per_epoch=4", "data.split={val: 0.0}", "epochs=1", "batch_size=2",
        "model.encoder=resnet18", "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 8]}",
        "logger=[csv]", "tile_size=64", "overlap=16", f"output={out / 'run'}",
    ]  # fmt: skip


WRITERS = [
    Writer(
        "predict",
        lambda i, o: [
            "predict",
            str(i.scene),
            str(o / "mask.tif"),
            "--model",
            str(i.ckpt),
            "--precision",
            "fp32",
            "--probabilities",
            str(o / "probs.tif"),
            "--confidence",
            str(o / "conf.tif"),
            "--vector",
            str(o / "mask.gpkg"),
            "--quicklook",
            str(o / "mask.png"),
        ],
        ("mask.tif", "probs.tif", "conf.tif", "mask.gpkg", "mask.png"),
    ),
    *(
        Writer(
            f"vectorize{ext}",
            lambda i, o, ext=ext: ["vectorize", str(i.mask), str(o / f"polygons{ext}")],
            (f"polygons{ext}",),
        )
        for ext in (".gpkg", ".fgb", ".geojson", ".parquet")
    ),
    Writer(
        "explain",
        lambda i, o: [
            "explain",
            str(i.scene),
            str(o / "cam.tif"),
            "--model",
            str(i.ckpt),
            "--class",
            "building",
            "--overlay",
            str(o / "cam.png"),
        ],
        ("cam.tif", "cam.png"),
    ),
    Writer(
        "evaluate",
        lambda i, o: [
            "evaluate",
            str(i.ckpt),
            "--images",
            str(i.images),
            "--labels",
            str(i.labels),
            "-o",
            str(o / "eval"),
        ],
        ("eval/metrics.json",),
        rerun=(),  # evaluate replaces its own report files
    ),
    Writer(
        "diagnose",
        lambda i, o: [
            "diagnose",
            str(i.ckpt),
            "--images",
            str(i.images),
            "--labels",
            str(i.labels),
            "-o",
            str(o / "diag"),
        ],
        ("diag/index.md",),
    ),
    Writer("export.pt", lambda i, o: ["export", str(i.ckpt), str(o / "m.pt")], ("m.pt",)),
    Writer(
        "export.onnx",
        lambda i, o: ["export", str(i.ckpt), str(o / "m.onnx"), "--resolution", "50"],
        ("m.onnx", "m.deepness.onnx"),
    ),
    Writer(
        "export.int8",
        lambda i, o: [
            "export",
            str(i.folder / "tiny-int8.safetensors"),
            str(o / "q.onnx"),
            "--resolution",
            "50",
            "--int8",
            "--calibration",
            str(i.images),
            "--tiles",
            "4",
        ],
        ("q.onnx", "q.deepness.onnx"),
    ),
    Writer(
        "train",
        _train,
        ("run/model.safetensors",),
        keeps=("run/last.ckpt", "run/config.yaml", "run/metrics.csv", "run/train.json"),
        resume=("--resume",),
    ),
]
ROWS = [pytest.param(w, id=w.name) for w in WRITERS]
# the free space left on the full disk, as shares of what the writer's clean run writes: one point
# in the suite, several with GEOSEG_FAULT_MATRIX=full (make stress)
SHARES = [0.1, 0.4, 0.8] if os.environ.get("GEOSEG_FAULT_MATRIX") == "full" else [0.4]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    folder = tmp_path_factory.mktemp("matrix-inputs")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256]
    scene = np.stack([np.sin(x / (6.0 + k)) + np.cos(y / 9.0) for k in range(3)])
    scene = np.clip((scene + rng.normal(0, 0.3, scene.shape) + 2.5) * 50, 1, 255)
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    image = write_raster(folder / "images" / "a.tif", scene.astype(np.uint8))
    labels = (scene[0] > 125).astype(np.uint8) + (scene[1] > 200).astype(np.uint8)
    write_raster(folder / "labels" / "a.tif", labels[None].astype(np.uint8))
    ckpt = tiny_checkpoint(folder / "tiny.safetensors")
    # int8 of this random, indecisive network agrees with fp32 on under 99 %: its variant keeps
    # every layer in float, so the row runs the int8 export's calibration, check and writes under
    # faults (tests/export/test_onnx_int8.py checks the quantization itself)
    floats = Int8Variant(qparams={}, float_layers=("encoder", "decoder", "segmentation_head"))
    config = read_config(ckpt).replace(variants={"int8": floats.to_dict()})
    rewrite_checkpoint(ckpt, folder / "tiny-int8.safetensors", config)
    mask = folder / "mask.tif"
    run([
        "predict", str(image), str(mask), "--model", str(ckpt), "--precision", "fp32",
    ]).check_returncode()  # fmt: skip
    return Inputs(folder, image, ckpt, mask, folder / "images", folder / "labels")


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geoseg", "-q", *args], env=_env(), text=True,
        capture_output=True, timeout=600, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "geoseg", "-q", *args], env=_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def status(rc: int, err: str) -> str:
    """An exit status as a person reads it (a negative one names the signal that killed it)."""
    return f"exit {signal.Signals(-rc).name if rc < 0 else rc}; stderr: {err.strip()[-1500:]}"


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def temporaries(out: Path) -> list[str]:
    return [str(p.relative_to(out)) for p in out.rglob("*") if ".partial" in p.name]


def published(writer: Writer, out: Path) -> list[str]:
    return [name for name in writer.outputs if (out / name).exists()]


def assert_all_or_nothing(writer: Writer, out: Path) -> bool:
    """Every output there and whole, or none (what the writer keeps on purpose aside); True when
    all are there."""
    there = published(writer, out)
    assert there in ([], list(writer.outputs)), f"published by halves: {there}"
    if there:
        for name in there:
            path = out / name
            assert path.stat().st_size > 0, name
            if path.suffix == ".tif":
                from geoseg.io.writer import verify_cog

                verify_cog(path)
        return True
    allowed = {Path(k).parts[0] for k in writer.keeps}
    finals = [
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and ".partial" not in p.name and str(p.relative_to(out)) not in writer.keeps
    ]
    # a folder output may keep the resume state the writer names, nothing else of it
    assert [f for f in finals if Path(f).parts[0] not in allowed or f in writer.outputs] == [], (
        f"left under final names: {finals}"
    )
    return False


def fill(folder: Path, leave: int) -> None:
    """Fill ``folder``'s file system so that only about ``leave`` bytes stay free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


@pytest.fixture(scope="module")
def needs(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Bytes each writer's clean run writes (what the full-disk points are fractions of)."""
    out: dict[str, int] = {}
    for w in WRITERS:
        folder = tmp_path_factory.mktemp(f"clean-{w.name}")
        done = run(w.args(inputs, folder))
        assert done.returncode == 0, status(done.returncode, done.stderr)
        assert assert_all_or_nothing(w, folder)
        out[w.name] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return out


@pytest.mark.parametrize("writer", ROWS)
@pytest.mark.parametrize("share", SHARES)
def test_full_disk(
    writer: Writer, share: float, inputs: Inputs, needs: dict[str, int], tmp_path: Path
) -> None:
    before = digest(inputs.folder)
    with small_disk(tmp_path / "disk", f"{max(4, 4 * needs[writer.name] // 2**20 + 4)}m") as disk:
        out = disk / "out"
        out.mkdir()
        fill(disk, int(share * needs[writer.name]))
        done = run(writer.args(inputs, out))
        assert done.returncode == 1, status(done.returncode, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "disk is full" in lines[0], done.stderr
        assert not assert_all_or_nothing(writer, out)
        assert temporaries(out) == []
        (disk / "filler").unlink()
        # with space again the same command succeeds, resuming what the failed run kept
        kept = any((out / k).exists() for k in writer.keeps)
        again = run([*writer.args(inputs, out), *(writer.resume if kept else ())])
        assert again.returncode == 0, status(again.returncode, again.stderr)
        assert assert_all_or_nothing(writer, out) and temporaries(out) == []
    assert digest(inputs.folder) == before


@pytest.mark.parametrize("writer", ROWS)
def test_read_only_folder(writer: Writer, inputs: Inputs, tmp_path: Path) -> None:
    before = digest(inputs.folder)
    with small_disk(tmp_path / "ro", "4m") as out:
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)  # a read-only disk
        done = run(writer.args(inputs, out))
        assert done.returncode == 1, status(done.returncode, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "read-only" in lines[0], done.stderr
        assert published(writer, out) == []
    assert digest(inputs.folder) == before


@pytest.mark.parametrize("writer", ROWS)
def test_two_runs_writing_one_path(writer: Writer, inputs: Inputs, tmp_path: Path) -> None:
    """Both start before either publishes: each either finishes or refuses in one line (the
    other's output exists); what is published is whole, and no temporary file stays."""
    before = digest(inputs.folder)
    out = tmp_path / "out"
    out.mkdir()
    procs = [start(writer.args(inputs, out)) for _ in range(2)]
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    for proc, _, err in results:
        assert proc.returncode in (0, 1), status(proc.returncode, err)
        if proc.returncode == 1:  # the other run's output is there: refused in one line
            lines = err.strip().splitlines()
            assert len(lines) == 1 and any(
                word in lines[0] for word in ("exists", "earlier", "not empty", "is writing")
            ), err
    assert any(p.returncode == 0 for p, _, _ in results)
    assert assert_all_or_nothing(writer, out) and temporaries(out) == []
    assert digest(inputs.folder) == before


def _interrupt(writer: Writer, inputs: Inputs, out: Path, sig: signal.Signals) -> tuple[int, str]:
    """Start the writer and send ``sig`` once its first temporary file appears (or, for a writer
    that finishes first, whenever it is done)."""
    proc = start(writer.args(inputs, out))
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not temporaries(out):
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


@pytest.mark.parametrize("writer", ROWS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted(writer: Writer, sig: signal.Signals, inputs: Inputs, tmp_path: Path) -> None:
    before = digest(inputs.folder)
    out = tmp_path / "out"
    out.mkdir()
    rc, err = _interrupt(writer, inputs, out, sig)
    assert rc in (0, 130), status(rc, err)
    if rc == 130:
        assert "Interrupted: " in err and "Traceback" not in err, err
    complete = assert_all_or_nothing(writer, out)
    if rc == 0:  # the signal came after the run: everything is there
        assert complete
    assert temporaries(out) == []
    assert digest(inputs.folder) == before


@pytest.mark.parametrize("writer", ROWS)
def test_killed_then_rerun(writer: Writer, inputs: Inputs, tmp_path: Path) -> None:
    """``kill -9`` leaves what nothing could clean; the rerun of the same command finishes and
    leaves no temporary file."""
    before = digest(inputs.folder)
    out = tmp_path / "out"
    out.mkdir()
    rc, err = _interrupt(writer, inputs, out, signal.SIGKILL)
    assert rc in (0, -signal.SIGKILL), status(rc, err)
    assert_all_or_nothing(writer, out)
    args = writer.args(inputs, out)
    again = run([*args, *writer.rerun])
    assert again.returncode == 0, status(again.returncode, again.stderr)
    assert assert_all_or_nothing(writer, out) and temporaries(out) == []
    assert digest(inputs.folder) == before
