from __future__ import annotations

from pathlib import Path

import pytest

from geoseg.distributed.cluster import parse_scheduler
from geoseg.distributed.inputs import check_output_sets, expand_inputs, output_set
from geoseg.errors import RasterOpenError, SchedulerError, WriteError
from geoseg.io.open import to_gdal_path
from geoseg.io.storage import gdal_options, join, split_url


def test_paths_globs_folders_and_lists_expand_in_order_without_duplicates(
    rasters: list[Path], tmp_path: Path
) -> None:
    folder = rasters[0].parent
    listing = tmp_path / "list.txt"
    listing.write_text(f"# inputs\n{rasters[2]}\n\nhttps://example.com/a.tif\ns3://bucket/b.tif\n")
    got = expand_inputs([str(rasters[1]), str(folder / "scene*.tif"), f"@{listing}", str(folder)])
    assert got == [
        str(rasters[1]),
        str(rasters[0]),
        str(rasters[2]),
        "https://example.com/a.tif",
        "s3://bucket/b.tif",
    ]


@pytest.mark.parametrize(
    ("item", "match"),
    [("nope.tif", "no such file"), ("nope/*.tif", "matches no file"), ("@nope.txt", "text file")],
)
def test_inputs_that_name_nothing_are_refused(
    item: str, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RasterOpenError, match=match):
        expand_inputs([item])


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RasterOpenError, match="without rasters"):
        expand_inputs([str(tmp_path)])


def test_output_names_and_clashes(tmp_path: Path) -> None:
    s = output_set("s3://b/in/scene.tif", "s3://b/out/", probabilities=True, vector="gpkg")
    assert (
        s.mask == "s3://b/out/scene_classes.tif"
        and s.probabilities == "s3://b/out/scene_probabilities.tif"
    )
    assert s.vector == "s3://b/out/scene_polygons.gpkg" and s.confidence is None
    a, b = (
        output_set(str(tmp_path / "x/a.tif"), tmp_path),
        output_set(str(tmp_path / "y/a.tif"), tmp_path),
    )
    with pytest.raises(WriteError, match="would both write"):
        check_output_sets([a, b])
    own = output_set(str(tmp_path / "a_classes.tif"), tmp_path)  # its mask name is another input
    with pytest.raises(WriteError, match="is an input as well as an output"):
        check_output_sets(
            [
                own,
                output_set(str(tmp_path / "a_classes_classes.tif"), tmp_path),
                output_set(str(tmp_path / "a.tif"), tmp_path),
            ]
        )


def test_scheduler_values() -> None:
    assert parse_scheduler("local:2").workers == 2 and parse_scheduler("local:2").local
    assert parse_scheduler("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    for bad in ("local:0", "local:x", "10.0.0.5:8786", ""):
        with pytest.raises(SchedulerError, match="expected local"):
            parse_scheduler(bad)


def test_object_urls_and_endpoint_settings() -> None:
    assert to_gdal_path("s3://bucket/a/b.tif") == "/vsis3/bucket/a/b.tif"
    assert split_url("s3://bucket/a/b.tif") == ("bucket", "a/b.tif")
    assert join("s3://bucket/out/", "m.tif") == "s3://bucket/out/m.tif"
    opts = gdal_options({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1"})
    assert (
        opts["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
        and opts["AWS_HTTPS"] == "NO"
        and opts["AWS_VIRTUAL_HOSTING"] == "FALSE"
    )
    assert opts["AWS_REGION"] == "eu-west-1" and "AWS_SECRET_ACCESS_KEY" not in opts
    assert (
        gdal_options({"AWS_S3_ENDPOINT": "minio:9000", "AWS_ENDPOINT_URL": "https://x"})[
            "AWS_S3_ENDPOINT"
        ]
        == "minio:9000"
    )


@pytest.mark.slow
def test_object_storage_and_input_expansion_import_neither_torch_nor_dask() -> None:
    import subprocess
    import sys

    code = (
        "import geoseg.distributed, geoseg.io.storage, geoseg.distributed.inputs, "
        "geoseg.distributed.cluster, sys; "
        "geoseg.distributed.inputs.expand_inputs(['s3://b/a.tif']); print(' '.join(m for m in "
        "('torch', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
