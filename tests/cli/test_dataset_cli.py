"""``geoseg dataset check|stats`` on generated datasets, and their errors."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from geoseg.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_check_dubai(dubai_root) -> None:
    res = run("dataset", "check", str(dubai_root), "--kind", "dubai")
    assert res.exit_code == 0, res.output
    assert (
        "6 image(s)" in res.output
        and "Tile 2: 2" in res.output
        and "unannotated (ignored)" in res.output
    )
    assert "status       OK" in res.output


def test_check_spacenet6_json(sn6_root) -> None:
    res = run(
        "dataset",
        "check",
        str(sn6_root),
        "--kind",
        "spacenet6",
        "--product",
        "SAR-Intensity+PS-RGB",
        "--json",
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["images"] == 4 and report["crs"] == {"EPSG:32631": 4}
    assert 0.03 < report["nodata_fraction"] < 0.2 and report["class_pixels"]["building"] > 0


def test_stats_to_json(tmp_path, sn6_root) -> None:
    out = tmp_path / "stats.json"
    res = run("dataset", "stats", str(sn6_root), "--kind", "spacenet6", "-o", str(out))
    assert res.exit_code == 0, res.output
    stats = json.loads(out.read_text())
    assert len(stats["mean"]) == 4 and -40 < stats["mean"][0] < 10  # SAR in dB
    assert all(lo < hi for lo, hi in zip(stats["p2"], stats["p98"], strict=True))


def test_geotiff_mismatch_and_unreadable_files(tmp_path, geotiff_pair) -> None:
    image, _ = geotiff_pair
    root = tmp_path / "ds"
    shutil.copytree(image.parent.parent, root)
    (root / "images" / "broken.tif").write_bytes(b"not a tiff")
    res = run("dataset", "check", str(root), "--kind", "geotiff")
    assert (
        res.exit_code == 1
        and "broken.tif: cannot read" in res.output
        and "--on-error skip" in res.output
    )
    res = run("dataset", "check", str(root), "--kind", "geotiff", "--on-error", "skip")
    assert res.exit_code == 1 and "unreadable" in res.output and "class 0" in res.output


def test_empty_and_wrong_layout(tmp_path) -> None:
    res = run("dataset", "check", str(tmp_path), "--kind", "dubai")
    assert res.exit_code == 1 and "the folder is empty" in res.output
    (tmp_path / "x").mkdir()
    res = run("dataset", "check", str(tmp_path), "--kind", "spacenet6")
    assert res.exit_code == 1 and "expected <root>/AOI_11_Rotterdam/SAR-Intensity" in res.output
    assert "Traceback" not in res.output
