"""The app's pieces without a server: model catalogue, workspace, input checks, views, settings."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine

from geoseg.app.catalog import ModelCatalog
from geoseg.app.config import AppConfig
from geoseg.app.urls import check_url
from geoseg.app.views import Footprint, class_areas, footprint_of, legend_html, map_svg
from geoseg.app.workspace import Workspace, check_raster, display_name, stage_upload
from geoseg.classes import ClassTable
from geoseg.errors import ConfigError, ModelError, RasterOpenError, UploadError
from tests.conftest import write_raster


def test_catalog_offers_only_checkpoints_directly_in_the_folder(
    models_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((models_dir / "tiny.safetensors").read_bytes())
    link = models_dir / "link.safetensors"
    link.symlink_to(outside)
    try:
        catalog = ModelCatalog(models_dir, include_bundled=False)
        assert catalog.names() == ["tiny"]
        for name in ("link", "../outside", str(outside), "notes"):
            with pytest.raises(ModelError, match="unknown model"):
                catalog.entry(name)
        assert catalog.load("tiny") is catalog.load("tiny")  # loaded once, kept
        assert "classes (3): background, building, road" in catalog.entry("tiny").describe()
        assert "GSD: 0.5 m" in catalog.entry("tiny").describe()
    finally:
        link.unlink()


def test_bundled_model_is_offered_first(models_dir: Path) -> None:
    names = ModelCatalog(models_dir).names()
    assert names[:2] == ["quality", "fast"] and "tiny" in names


def test_workspace_folders_are_private_and_swept(tmp_path: Path) -> None:
    ws = Workspace(keep_seconds=60, root=tmp_path)
    a, b = ws.new_request(), ws.new_request()
    assert a != b and a.parent == b.parent == ws.root
    assert oct(os.stat(ws.root).st_mode & 0o777) == "0o700"
    old = time.time() - 120
    os.utime(a, (old, old))
    assert ws.sweep() == 1 and not a.exists() and b.exists()
    ws.close()
    assert not ws.root.exists()


def test_uploads_get_fixed_names_and_size_checks(tmp_path: Path) -> None:
    src = tmp_path / "x.TIFF"
    src.write_bytes(b"0" * 100)
    folder = tmp_path / "req"
    folder.mkdir()
    assert stage_upload(src, folder, max_bytes=1000, name="../../evil.TIFF") == folder / "input.tif"
    with pytest.raises(UploadError, match=r"big\.tif: 0\.0 MB is over this server's upload limit"):
        stage_upload(src, tmp_path, max_bytes=10, name="big.tif")
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("..\\..\\a b.tif") == "a_b.tif"
    assert display_name("...") == "upload"


def test_only_plain_image_formats_are_read(tmp_path: Path) -> None:
    vrt = tmp_path / "x.vrt"
    write_raster(tmp_path / "r.tif", np.ones((1, 4, 4), np.uint8))
    vrt.write_text(
        '<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand dataType="Byte" band="1">'
        f"<SimpleSource><SourceFilename>{tmp_path / 'r.tif'}</SourceFilename></SimpleSource>"
        "</VRTRasterBand></VRTDataset>"
    )
    with pytest.raises(
        UploadError, match="expected a GeoTIFF/COG, JPEG or PNG image, found a VRT file"
    ):
        check_raster(vrt, "x.vrt")
    assert check_raster(tmp_path / "r.tif", "r.tif") == ("GTiff", 4, 4)
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(RasterOpenError, match=r"^t\.txt: expected a raster"):
        check_raster(tmp_path / "t.txt", "t.txt")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "/vsicurl/http://x/a.tif",
        "ftp://host/a.tif",
        "http://",
        "s3://b/k.tif",
    ],
)
def test_only_http_urls(url: str) -> None:
    with pytest.raises(UploadError, match="expected an http:// or https:// URL"):
        check_url(url)
    with pytest.raises(UploadError, match="does not read URLs"):
        check_url("https://example.org/a.tif", allowed=False)
    remote = check_url(" https://example.org/a.tif?sig=1 ", allow_private=True)
    assert (remote.url, remote.name) == ("https://example.org/a.tif?sig=1", "a.tif")


def test_exposure_warning_and_settings(models_dir: Path, tmp_path: Path) -> None:
    assert AppConfig().exposure_warning() is None
    assert "nobody has to log in" in (AppConfig(host="0.0.0.0").exposure_warning() or "")
    assert AppConfig(host="0.0.0.0", auth=(("a", "b"),)).exposure_warning() is None
    with pytest.raises(ConfigError, match="no such folder"):
        AppConfig(models_dir=tmp_path / "none")
    with pytest.raises(ConfigError, match="max_size_mb must be > 0"):
        AppConfig(max_size_mb=0)


def test_class_areas_in_metres_and_geodesic(tmp_path: Path) -> None:
    ids = np.zeros((1, 10, 10), np.uint8)
    ids[0, :4] = 1
    ids[0, 9, 9] = 255
    table = ClassTable.from_names(["land", "water"])
    utm = write_raster(
        tmp_path / "utm.tif", ids, nodata=255, transform=Affine(2, 0, 500000, 0, -2, 5700000)
    )
    areas = class_areas(utm, table)
    assert [a.pixels for a in areas] == [59, 40]
    assert areas[1].m2 == pytest.approx(160.0) and areas[1].ha == pytest.approx(0.016)
    assert areas[1].share == pytest.approx(40 / 99)
    geo = write_raster(
        tmp_path / "geo.tif",
        ids,
        nodata=255,
        crs="EPSG:4326",
        transform=Affine(1e-4, 0, 4.35, 0, -1e-4, 51.87),
    )
    water = class_areas(geo, table)[1].m2
    assert water == pytest.approx(40 * 11.13 * 6.88, rel=0.01)  # ~11.1 m by ~6.9 m pixels at 51.9°N
    bare = write_raster(tmp_path / "bare.tif", ids, crs=None, transform=None)
    assert class_areas(bare, table)[0].m2 is None


def test_map_and_legend(tmp_path: Path) -> None:
    ras = write_raster(tmp_path / "m.tif", np.zeros((1, 20, 20), np.uint8))
    fp = footprint_of(ras)
    assert fp is not None
    west, south, east, north = fp.bounds
    assert (
        2.9 < west < east < 3.1 and 51.4 < south < north < 51.5
    )  # EPSG:32631 at 500 km E, 5700 km N
    svg = map_svg(fp, b"\x89PNG")
    assert (
        svg.startswith('<svg id="geoseg-map"')
        and "°N" in svg
        and "°E" in svg
        and "data:image/png;base64" in svg
    )
    assert (
        footprint_of(
            write_raster(
                tmp_path / "n.tif", np.zeros((1, 4, 4), np.uint8), crs=None, transform=None
            )
        )
        is None
    )
    assert "cannot be placed on a map" in map_svg(None)
    dubai = map_svg(Footprint((55.1, 55.2, 55.2, 55.1), (25.0, 25.0, 25.1, 25.1)))
    for label in ("55.1°E", "55.2°E", "25.0°N", "25.1°N"):  # graticule every 0.1° both ways
        assert f'fill="#556">{label}</text>' in dubai
    html = legend_html(class_areas(ras, ClassTable.from_names(["a<b", "c"])))
    assert "a&lt;b" in html and "100.0%" in html


@pytest.mark.slow
def test_importing_the_app_loads_neither_torch_nor_gradio() -> None:
    import subprocess
    import sys

    code = (
        "import geoseg.app.ui, geoseg.app.catalog, geoseg.app.pipeline; import sys; print(' "
        "'.join(sys.modules))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "torch" not in loaded and "gradio" not in loaded


def test_catalog_refresh_sees_new_and_removed_checkpoints(models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    catalog = ModelCatalog(folder, include_bundled=False)
    assert catalog.names() == []
    with pytest.raises(ModelError, match=r"expected one of: none \(no checkpoints found\)"):
        catalog.entry("tiny")
    (folder / "new.safetensors").write_bytes((models_dir / "tiny.safetensors").read_bytes())
    (folder / "broken.safetensors").write_bytes(b"not a checkpoint")
    assert catalog.refresh() == ["new"]
    catalog.load("new")
    (folder / "new.safetensors").unlink()
    assert catalog.refresh() == [] and not catalog._loaded


def test_catalog_offers_exported_onnx_models(models_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from geoseg.export import export_onnx
    from geoseg.inference import PredictOptions, predict_raster

    folder = tmp_path / "models"
    folder.mkdir()
    export_onnx(models_dir / "tiny.safetensors", folder / "tiny.onnx")
    (folder / "broken.onnx").write_bytes(b"not onnx")
    catalog = ModelCatalog(folder, include_bundled=False)
    assert catalog.names() == ["tiny.onnx"]  # the unreadable file is not offered
    entry = catalog.entry("tiny.onnx")
    assert entry.config.classes.names == ["background", "building", "road"]
    loaded = catalog.load("tiny.onnx")
    assert getattr(loaded.model, "runs_outside_torch", False)
    scene = write_raster(
        tmp_path / "scene.tif",
        np.random.default_rng(0).integers(0, 255, (3, 96, 96)).astype(np.uint8),
        transform=Affine(0.5, 0, 0, 0, -0.5, 0),
        crs="EPSG:32631",
    )
    a = predict_raster(scene, tmp_path / "a.tif", loaded, PredictOptions(device="cpu"))
    b = predict_raster(
        scene,
        tmp_path / "b.tif",
        models_dir / "tiny.safetensors",
        PredictOptions(device="cpu", precision="fp32"),
    )
    import rasterio

    with rasterio.open(a.mask) as x, rasterio.open(b.mask) as y:
        assert (x.read() == y.read()).mean() > 0.999


def _workspace_in_child(parent: Path, *, stay: bool) -> tuple[Path, Any]:
    """A workspace made by another process: one that stays alive (until its stdin closes), or
    one that dies at once without cleaning up, as a crash would."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import os, sys; from pathlib import Path; from geoseg.app.workspace import Workspace; "
        f"w = Workspace(root=Path({str(parent)!r})); w.new_request(); print(w.root, flush=True); "
        + ("sys.stdin.read(); " if stay else "")
        + "os._exit(0)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    root = Path(child.stdout.readline().strip())
    if not stay:
        child.wait(30)
    return root, child


def test_start_up_sweep_removes_only_roots_no_live_process_owns(tmp_path: Path) -> None:
    from geoseg.app.workspace import ORPHAN_GRACE, sweep_orphans

    crashed, _ = _workspace_in_child(tmp_path, stay=False)
    alive, child = _workspace_in_child(tmp_path, stay=True)
    mine = Workspace(root=tmp_path)
    legacy = tmp_path / "geoseg-app-legacy"  # no lock file: made by an older version
    (legacy / "req").mkdir(parents=True)
    (legacy / "req" / "input.tif").write_bytes(b"x")
    old = time.time() - ORPHAN_GRACE - 5
    os.utime(legacy, (old, old))
    being_made = tmp_path / "geoseg-app-new"  # no lock file yet, made a moment ago
    being_made.mkdir()
    target = tmp_path / "keep"
    target.mkdir()
    (tmp_path / "geoseg-app-link").symlink_to(target)
    (tmp_path / "geoseg-app-file").write_text("not a folder")
    try:
        assert crashed.is_dir() and any(crashed.iterdir())
        assert sorted(sweep_orphans(tmp_path)) == sorted([crashed, legacy])
        assert not crashed.exists() and not legacy.exists()
        assert alive.is_dir() and mine.root.is_dir() and being_made.is_dir() and target.is_dir()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
        mine.close()
    assert sweep_orphans(tmp_path) == [alive]  # its process has ended now
    assert not mine.root.exists()


def test_request_sweep_keeps_the_lock_and_gradios_cache(tmp_path: Path) -> None:
    ws = Workspace(keep_seconds=60, root=tmp_path)
    request = ws.new_request()
    (ws.root / "gradio").mkdir()
    old = time.time() - 120
    for p in (request, ws.root / "gradio", ws.root / ".owner.lock"):
        os.utime(p, (old, old))
    assert ws.sweep() == 1
    assert sorted(p.name for p in ws.root.iterdir()) == [".owner.lock", "gradio"]
    ws.close()
    assert not ws.root.exists()


def test_pixel_budget_is_checked_from_the_header(tmp_path: Path) -> None:
    from tests.app.conftest import write_huge_claim

    huge = write_huge_claim(tmp_path / "huge.tif")
    assert huge.stat().st_size < 1_000_000
    with pytest.raises(UploadError) as info:
        check_raster(huge, "huge.tif", max_pixels=100_000_000)
    assert str(info.value) == (
        "huge.tif: 200000 x 200000 px (40,000 megapixels) is over this server's limit of 100 "
        "megapixels; crop it to the area you need or reduce its resolution, and upload that"
    )
    small = write_raster(tmp_path / "s.tif", np.zeros((3, 10, 20), np.uint8))
    assert check_raster(small, "s.tif", max_pixels=200) == ("GTiff", 20, 10)
    with pytest.raises(
        UploadError, match=r"^s\.tif: 20 x 10 px \(0\.0002 megapixels\) is over this server's limit"
    ):
        check_raster(small, "s.tif", max_pixels=199)


def test_confidence_colour_bar_matches_the_picture(tmp_path: Path) -> None:
    import io
    import re

    from PIL import Image

    from geoseg.app.views import confidence_png, confidence_scale_html

    conf = write_raster(
        tmp_path / "c.tif", np.array([[[0, 255]]], np.uint8), transform=Affine(1, 0, 0, 0, -1, 2)
    )
    mask = write_raster(
        tmp_path / "m.tif", np.zeros((1, 1, 2), np.uint8), transform=Affine(1, 0, 0, 0, -1, 2)
    )
    picture = np.asarray(Image.open(io.BytesIO(confidence_png(conf, mask))))
    stops = re.findall(r"rgb\((\d+), (\d+), (\d+)\) (\d+)%", confidence_scale_html())
    assert len(stops) == 11 and stops[0][3] == "0" and stops[-1][3] == "100"
    bar_ends = [tuple(int(v) for v in stops[k][:3]) for k in (0, -1)]
    for end, pixel in zip(bar_ends, picture[0], strict=True):  # probability 0 and 1
        assert np.abs(np.array(end) - pixel[:3].astype(int)).max() <= 1
    assert ">0<" in confidence_scale_html() and ">1<" in confidence_scale_html()
