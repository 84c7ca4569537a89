"""One input, one set of options, every door: the same class mask, byte for byte.

The doors are the command line, ``predict_raster``, ``predict_classes`` and ``predict_block`` by
blocks, Dask (a local cluster of worker processes, and a scheduler with one two-thread worker
started on 127.0.0.1 as a user would), and object storage on a local S3 server, in one process and
on the cluster; the web app's door is in ``tests/app``. The model is the bundled ``fast`` one, the
input a real scene stored as 16-bit with an extra band, so ``--bands`` and ``--scale`` both
change what the network sees.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from geoseg.cli import cli
from geoseg.inference import (
    PredictOptions,
    iter_probabilities,
    predict_block,
    predict_classes,
    predict_raster,
)
from tests.conftest import REPO, write_raster
from tests.s3_server import local_bucket

pytestmark = pytest.mark.slow

MODEL = "fast"
OPTIONS = PredictOptions(
    tile_size=256, overlap=32, bands=(2, 3, 4), scale=(0.0, 4080.0), device="cpu", workers=1
)
FLAGS = [
    "--model", MODEL, "--tile-size", "256", "--overlap", "32", "--bands", "2,3,4",
    "--scale", "0,4080", "--device", "cpu", "--workers", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300 x 420 crop of the sample scene as uint16 (x16), behind a first band of noise, with a
    nodata corner."""
    with rasterio.open(REPO / "sample_data" / "rotterdam_ps_rgb.tif") as ds:
        window = Window(200, 150, 420, 300)
        rgb = ds.read(window=window).astype(np.uint16) * 16
        transform, crs = ds.window_transform(window), ds.crs
    noise = np.random.default_rng(0).integers(0, 4000, rgb.shape[1:], dtype=np.uint16)
    data = np.concatenate([noise[None], rgb])
    data[:, :40, :60] = 0
    folder = tmp_path_factory.mktemp("doors")
    return write_raster(
        folder / "scene.tif", data, transform=transform, crs=crs, nodata=0, tiled=True
    )


@pytest.fixture(scope="module")
def reference(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The mask of ``predict_raster``: what every door must give."""
    dst = tmp_path_factory.mktemp("reference") / "mask.tif"
    predict_raster(scene, dst, MODEL, OPTIONS)
    mask = read(dst)
    assert len(np.unique(mask)) >= 3  # a real map: several classes and nodata
    return mask


def read(path: str | Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_command_line(scene: Path, reference: np.ndarray, tmp_path: Path) -> None:
    dst = tmp_path / "cli.tif"
    result = CliRunner().invoke(cli, ["predict", str(scene), str(dst), *FLAGS])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read(dst), reference)


def blocks(height: int, width: int, size: int) -> Iterator[Window]:
    for r in range(0, height, size):
        for c in range(0, width, size):
            yield Window(c, r, min(size, width - c), min(size, height - r))


def test_predict_classes_in_blocks(scene: Path, reference: np.ndarray) -> None:
    stitched = np.zeros_like(reference)
    for w in blocks(300, 420, 130):  # blocks that do not follow the tile plan
        part = predict_classes(scene, MODEL, OPTIONS, block=w)
        stitched[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = part.data
    np.testing.assert_array_equal(stitched, reference)


def test_predict_block_stitched_equals_the_whole_run(scene: Path, reference: np.ndarray) -> None:
    whole = np.concatenate([g.data for g in iter_probabilities(scene, MODEL, OPTIONS)], axis=1)
    stitched = np.zeros_like(whole)
    for w in blocks(300, 420, 170):
        part = predict_block(scene, MODEL, w, OPTIONS)
        stitched[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = part.data
    np.testing.assert_array_equal(stitched, whole)  # the very float32 values
    valid = reference[0] != 255
    np.testing.assert_array_equal(whole.argmax(0)[valid], reference[0][valid])


def test_dask_local_cluster_of_processes(
    scene: Path, reference: np.ndarray, tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    from geoseg.distributed import predict_many

    for blocks_mode in (True, False):  # one raster in blocks, and as one task
        out = tmp_path / f"local-{blocks_mode}"
        result = predict_many(
            [scene], out, MODEL, OPTIONS, scheduler="local:2", blocks=blocks_mode, block_size=200
        )
        assert result.workers == 2 and result.predicted == 1
        np.testing.assert_array_equal(read(out / "scene_classes.tif"), reference)


@contextlib.contextmanager
def scheduler_and_worker(folder: Path, nthreads: int = 2) -> Iterator[tuple[str, Path]]:
    """``dask scheduler`` and one ``dask worker --nthreads N`` on 127.0.0.1, started as a user
    would in two terminals. Yields the scheduler's address and the worker's log."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
    info = folder / "scheduler.json"
    logs = folder / "scheduler.log", folder / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    with logs[0].open("w") as slog, logs[1].open("w") as wlog:
        scheduler = subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(info)],
            stdout=slog, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        worker = None
        try:
            deadline = time.monotonic() + 60
            while not info.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            import json

            address = json.loads(info.read_text())["address"]
            worker = subprocess.Popen(
                [dask, "worker", address, "--nthreads", str(nthreads), "--nworkers", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"],
                stdout=wlog, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
            from distributed import Client

            with Client(address, timeout="30s") as client:
                client.wait_for_workers(1, timeout=60)
            yield address, logs[1]
        finally:
            for proc in (worker, scheduler):
                if proc is not None:
                    proc.terminate()
            for proc in (worker, scheduler):
                if proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=30)


def worker_deaths(log: Path) -> list[str]:
    """Lines of a worker's log that say its process died (the nanny restarts it silently)."""
    text = log.read_text(errors="replace")
    return [
        line
        for line in text.splitlines()
        if "was killed by signal" in line
        or "exited with status" in line
        or "Restarting worker" in line
    ]


def test_dask_scheduler_with_a_two_thread_worker(
    scene: Path, reference: np.ndarray, tmp_path: Path
) -> None:
    """Blocks of one raster run on two threads of one worker at once, sharing one model."""
    pytest.importorskip("distributed")
    from geoseg.distributed import predict_many

    with scheduler_and_worker(tmp_path) as (address, log):
        for run in range(2):
            out = tmp_path / f"tcp{run}"
            result = predict_many([scene], out, MODEL, OPTIONS, scheduler=address, block_size=100)
            assert result.predicted == 1
            np.testing.assert_array_equal(read(out / "scene_classes.tif"), reference)
        assert worker_deaths(log) == []


def test_object_storage_in_one_process_and_on_the_cluster(
    scene: Path, reference: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``geoseg predict s3://... s3://...`` with only AWS_ENDPOINT_URL set, in this process, then
    through a local cluster; ``geoseg info`` reads the same object."""
    with local_bucket(monkeypatch) as (name, s3, _):
        s3.upload_file(str(scene), name, "in/scene.tif")
        src = f"s3://{name}/in/scene.tif"
        info = CliRunner().invoke(cli, ["info", src])
        assert info.exit_code == 0 and "420 x 300" in info.output, info.output
        one = CliRunner().invoke(cli, ["predict", src, f"s3://{name}/one/mask.tif", *FLAGS])
        assert one.exit_code == 0, one.output
        cluster = CliRunner().invoke(
            cli, ["predict", src, f"s3://{name}/many/", *FLAGS, "--scheduler", "local:2"]
        )
        assert cluster.exit_code == 0, cluster.output
        for key in ("one/mask.tif", "many/scene_classes.tif"):
            s3.download_file(name, key, str(tmp_path / "got.tif"))
            np.testing.assert_array_equal(read(tmp_path / "got.tif"), reference)


def test_the_web_app_and_its_api(scene: Path, reference: np.ndarray, tmp_path: Path) -> None:
    """The page's API (gradio_client, as the page itself calls it) with the same settings."""
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    from geoseg.app import AppConfig, close_app, launch_app
    from tests.app.conftest import free_port

    config = AppConfig(port=free_port(), workdir=tmp_path / "app", device="cpu")
    (tmp_path / "app").mkdir()
    demo = launch_app(config, block=False, warm=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{config.port}/", verbose=False,
                        download_files=str(tmp_path / "client"))  # fmt: skip
        *_, files, status = client.predict(
            handle_file(str(scene)), "", MODEL, 256, 32, "none", "auto", "2,3,4", "0,4080",
            api_name="/segment",
        )  # fmt: skip
        assert status.startswith("Done."), status
        paths = [Path(f["value"] if isinstance(f, dict) else f) for f in files]
        mask = next(p for p in paths if p.name == "classes.tif")
        np.testing.assert_array_equal(read(mask), reference)
    finally:
        close_app(demo)


def test_an_onnx_export_agrees(scene: Path, reference: np.ndarray, tmp_path: Path) -> None:
    """onnxruntime runs the exported graph in fp32: it agrees with geoseg's fp32 run."""
    pytest.importorskip("onnxruntime")
    exported = CliRunner().invoke(
        cli, ["export", MODEL, str(tmp_path / "fast.onnx"), "--no-deepness"]
    )
    assert exported.exit_code == 0, exported.output
    fp32 = tmp_path / "fp32.tif"
    predict_raster(scene, fp32, MODEL, OPTIONS.replace(precision="fp32"))
    dst = tmp_path / "onnx.tif"
    flags = [*FLAGS, "--precision", "fp32"]
    flags[flags.index("--model") + 1] = str(tmp_path / "fast.onnx")
    result = CliRunner().invoke(cli, ["predict", str(scene), str(dst), *flags])
    assert result.exit_code == 0, result.output
    got, want = read(dst), read(fp32)
    assert ((got == 255) == (reference == 255)).all()  # the same nodata
    assert (got == want).mean() >= 0.999
