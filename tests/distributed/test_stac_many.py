"""A static STAC catalog made in the test, served over loopback HTTP and from a local
S3-compatible server, through every door that takes many inputs (API, Dask, CLI): each item's
prediction equals the prediction on its assets downloaded and stacked by hand, and the STAC Items
and catalog written beside the outputs validate offline."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.distributed import predict_many
from geoseg.errors import InputCompatibilityWarning
from geoseg.inference import PredictOptions, predict_classes
from geoseg.models.checkpoint import LoadedModel
from tests.distributed.conftest import read
from tests.inference.conftest import config_for, conv3_model
from tests.s3_server import local_bucket
from tests.stac_catalog import ITEMS, hand_stacked, make_catalog
from tests.stac_validation import validate_file

pytestmark = pytest.mark.slow  # servers, a cluster and a dozen predictions

OPTS = PredictOptions(device="cpu", precision="fp32", workers=1)
RGB = ("red", "green", "blue")


@pytest.fixture(autouse=True)
def _reflectance_into_a_uint8_model() -> Iterator[None]:
    """The scaled item's reflectance is unlike the test model's 0..255: it warns, as it should."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputCompatibilityWarning)
        yield


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return LoadedModel(conv3_model(), config_for(tile=64, overlap=16).replace(band_names=RGB))


@pytest.fixture(scope="module")
def expected(
    tmp_path_factory: pytest.TempPathFactory, model: LoadedModel
) -> tuple[Path, dict[str, np.ndarray]]:
    """The catalog on disk, and each item's classes predicted from its bands stacked by hand."""
    root = tmp_path_factory.mktemp("stac")
    arrays = make_catalog(root / "cat")
    by_hand = root / "by-hand"
    by_hand.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputCompatibilityWarning)
        want = {
            item: predict_classes(str(hand_stacked(arrays, item, by_hand)), model, OPTS).data
            for item in ITEMS
        }
    return root / "cat", want


def _check_outputs(out: Path, want: dict[str, np.ndarray], source: str) -> None:
    for item in ITEMS:
        np.testing.assert_array_equal(read(out / f"{item}_classes.tif"), want[item])
        doc = json.loads((out / f"{item}_classes.stac.json").read_text())
        assert doc["properties"]["geoseg:item"] == item
        assert doc["properties"]["datetime"] == "2024-06-01T10:30:00Z"  # the imagery's time
        derived = [link["href"] for link in doc["links"] if link["rel"] == "derived_from"]
        assert derived == [f"{source}/{item}/{item}.json"]
        assert "classification/v1.1.0" in validate_file(out / f"{item}_classes.stac.json")[2]
    validate_file(out / "catalog.json")


def test_a_catalog_over_http(
    expected: tuple[Path, dict[str, np.ndarray]],
    model: LoadedModel,
    tmp_path: Path,
) -> None:
    from tests.http_server import serve_directory

    root, want = expected
    with serve_directory(root) as url:
        res = predict_many([f"{url}/catalog.json"], tmp_path / "out", model, OPTS)
        assert [d.outputs.src for d in res.done] == [f"{url}/{i}/{i}.json" for i in ITEMS]
        _check_outputs(tmp_path / "out", want, url)


def test_a_catalog_in_a_bucket_into_the_bucket(
    expected: tuple[Path, dict[str, np.ndarray]],
    model: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    root, want = expected
    with local_bucket(monkeypatch) as (name, s3, _):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), name, f"cat/{path.relative_to(root).as_posix()}")
        res = predict_many([f"s3://{name}/cat/catalog.json"], f"s3://{name}/out/", model, OPTS)
        assert res.predicted == 3 and res.catalog == f"s3://{name}/out/catalog.json"
        out = tmp_path / "back"
        out.mkdir()
        for obj in s3.list_objects_v2(Bucket=name, Prefix="out/")["Contents"]:
            s3.download_file(name, obj["Key"], str(out / obj["Key"].split("/")[-1]))
        _check_outputs(out, want, f"s3://{name}/cat")
        again = predict_many([f"s3://{name}/cat/catalog.json"], f"s3://{name}/out/", model, OPTS)
        assert again.skipped == 3  # the provenance in the bucket's masks is this request's


def test_an_item_collection_on_a_dask_cluster(
    expected: tuple[Path, dict[str, np.ndarray]],
    model: LoadedModel,
    client: Any,
    tmp_path: Path,
) -> None:
    root, want = expected
    res = predict_many([str(root / "items.json")], tmp_path / "out", model, OPTS, scheduler=client)
    assert res.predicted == 3 and res.workers == 2
    for item in ITEMS:
        np.testing.assert_array_equal(read(tmp_path / "out" / f"{item}_classes.tif"), want[item])


def test_the_cli_takes_an_item_collection_and_band_names(
    expected: tuple[Path, dict[str, np.ndarray]],
    model: LoadedModel,
    tmp_path: Path,
) -> None:
    root, _ = expected
    out = tmp_path / "out"
    args = [
        "predict",
        f"{root / 'items.json'}#bands",
        str(out) + "/",
        "--model",
        "fast",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--bands",
        "red,green,nir",
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert f"{out}/catalog.json: STAC catalog of 1 item(s)" in r.output
    arrays = make_catalog(tmp_path / "again")
    by_hand = hand_stacked(arrays, "bands", tmp_path, "rgn")
    np.testing.assert_array_equal(
        read(out / "bands_classes.tif"), predict_classes(str(by_hand), "fast", OPTS).data
    )
    r = CliRunner().invoke(cli, [*args[:-1], "red,green,swir16"])
    assert r.exit_code == 1 and "no asset holds the band 'swir16'" in r.output
    assert "Traceback" not in r.output
