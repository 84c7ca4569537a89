"""atomic_output(): disk full, read-only folders, long names, concurrent writers, failures
midway."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.errors import WriteError
from geoseg.io.atomic import atomic_output
from geoseg.io.writer import COGWriter
from tests.faults.conftest import small_disk

T = Affine(1, 0, 0, 0, -1, 0)


def _cog(dst: Path, data: np.ndarray, **kw: object) -> None:
    with COGWriter(
        dst,
        height=data.shape[1],
        width=data.shape[2],
        count=data.shape[0],
        dtype=data.dtype.name,
        transform=T,
        crs=None,
        **kw,  # type: ignore[arg-type]
    ) as out:
        out.write(data, rasterio.windows.Window(0, 0, data.shape[2], data.shape[1]))


def test_failure_midway_removes_the_temporary_file(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt, match="stop"), atomic_output(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt("stop")
    assert list(tmp_path.iterdir()) == []


def test_verify_failure_publishes_nothing(tmp_path: Path) -> None:
    def refuse(p: Path) -> None:
        raise WriteError(f"{p}: unreadable")

    with (
        pytest.raises(WriteError, match="unreadable"),
        atomic_output(tmp_path / "a.txt", verify=refuse) as tmp,
    ):
        tmp.write_text("x")
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_are_unique_per_run(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "a.tif") as one, atomic_output(tmp_path / "a.tif") as two:
        assert one != two and one.parent == two.parent == tmp_path and one.suffix == ".tif"
        one.write_text("1")
        two.write_text("2")
    assert (tmp_path / "a.tif").read_text() in "12" and [p.name for p in tmp_path.iterdir()] == [
        "a.tif"
    ]


def test_disk_full_is_a_clean_error_and_leaves_nothing(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(
        0, 255, size=(1, 700, 700), dtype=np.uint8
    )  # 490 kB, incompressible
    with small_disk(tmp_path / "disk", "256k") as disk:
        with pytest.raises(WriteError, match=r"disk is full|does not read back"):
            _cog(disk / "mask.tif", data)
        assert sorted(p.name for p in disk.iterdir()) == []


@pytest.mark.slow
def test_disk_full_during_predict_exits_non_zero(tmp_path: Path, ckpt: Path) -> None:
    from tests.conftest import write_raster
    from tests.faults.conftest import rgb

    scene = write_raster(tmp_path / "scene.tif", rgb(320, 320))
    with small_disk(tmp_path / "disk", "100k") as disk:
        result = CliRunner().invoke(
            cli,
            [
                "-q",
                "predict",
                str(scene),
                str(disk / "mask.tif"),
                "--model",
                str(ckpt),
                "--probabilities",
                str(disk / "p.tif"),
                "--precision",
                "fp32",
            ],
        )
        assert result.exit_code == 1, result.output
        assert "disk is full" in result.output or "does not read back" in result.output
        assert "unexpected" not in result.output and len(result.output.strip().splitlines()) == 1
        assert sorted(p.name for p in disk.iterdir()) == []


def test_read_only_folder_and_long_name_are_one_line_errors(tmp_path: Path) -> None:
    data = np.ones((1, 8, 8), np.uint8)
    with pytest.raises(WriteError, match="file name is too long"):
        _cog(tmp_path / ("x" * 300 + ".tif"), data)
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        with small_disk(folder, "64k"):
            os.system(f"mount -o remount,ro {folder}")  # a test-only remount of our own tmpfs
            with pytest.raises(WriteError, match="read-only file system"):
                _cog(folder / "mask.tif", data)
    else:
        folder.chmod(0o500)
        with pytest.raises(WriteError, match="no permission to write"):
            _cog(folder / "mask.tif", data)


_WRITER = """
import sys
import numpy as np
from affine import Affine
from rasterio.windows import Window
from geoseg.io.writer import COGWriter

value = int(sys.argv[2])
with COGWriter(sys.argv[1], height=600, width=600, count=1, dtype="uint8",
               transform=Affine(1, 0, 0, 0, -1, 0), crs=None, nodata=255, overwrite=True) as out:
    out.write(np.full((1, 600, 600), value, np.uint8), Window(0, 0, 600, 600))
"""


def test_concurrent_writers_publish_one_complete_output(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    dst = tmp_path / "mask.tif"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(dst), str(v)], env=env)
        for v in (1, 2, 3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    with rasterio.open(dst) as ds:
        values = np.unique(ds.read(1))
        assert len(values) == 1 and int(values[0]) in (
            1,
            2,
            3,
        )  # one run's whole output, never a mix or nodata
        assert int(np.unique(ds.read(1, out_shape=(1, 150, 150)))[0]) == int(values[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


_HOLD = (
    "import sys, time; from geoseg.io.atomic import claim_folder\n"
    "with claim_folder(sys.argv[1], 'train'):\n"
    "    print('held', flush=True); time.sleep(60)\n"
)


def test_a_claimed_folder_refuses_a_second_run_and_a_killed_holder_leaves_nothing(
    tmp_path: Path,
) -> None:
    """The claim is a lock on the folder itself: another process is refused in one line while the
    holder lives; ``kill -9`` of the holder frees the folder and leaves no file in it."""
    import signal
    import subprocess
    import sys

    from geoseg.errors import OutputExistsError
    from geoseg.io.atomic import claim_folder

    run = tmp_path / "made" / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputExistsError, match="another geoseg train is writing"):
            with claim_folder(run, "train"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert list(run.iterdir()) == []
    with claim_folder(run, "train"):
        assert list(run.iterdir()) == []
