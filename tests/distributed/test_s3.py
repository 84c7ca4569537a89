"""Object storage against a real S3-compatible server on 127.0.0.1 (moto in server mode): GDAL's
own HTTP client reads and boto3 writes, exactly as against a cloud bucket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.shutil

from geoseg.distributed import predict_many
from geoseg.errors import OutputExistsError, StorageError
from geoseg.inference import PredictOptions, predict_raster
from geoseg.io import storage
from geoseg.models.checkpoint import LoadedModel
from geoseg.vectorize import vectorize_raster
from tests.conftest import write_raster
from tests.distributed.conftest import read, textured
from tests.s3_server import local_bucket
from tests.vectorize.conftest import normalized
from tests.vectorize.conftest import read as read_polygons

pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (in the dev extra)")
pytest.importorskip("boto3", reason="writing to s3:// needs boto3 (the s3 extra)")

OPTS = PredictOptions(device="cpu", precision="fp32", workers=1)
pytestmark = pytest.mark.slow  # a cluster, a server and several predictions: seconds each


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """A fresh bucket on a local S3 server; only the variables a user sets. Yields (name,
    client)."""
    with local_bucket(monkeypatch) as (name, client, _):
        yield name, client


def _cog(src: Path, dst: Path) -> Path:
    rasterio.shutil.copy(src, dst, driver="COG", blocksize=64)
    return dst


def test_read_a_cog_from_the_bucket_predict_and_write_mask_and_polygons_back(
    bucket: tuple[str, Any], tmp_path: Path, tiny_model: LoadedModel
) -> None:
    name, s3 = bucket
    local = _cog(write_raster(tmp_path / "plain.tif", textured(150, 170)), tmp_path / "scene.tif")
    s3.upload_file(str(local), name, "in/scene.tif")
    res = predict_many(
        [f"s3://{name}/in/*.tif"],
        f"s3://{name}/out/",
        tiny_model,
        OPTS,
        confidence=True,
        vector=".gpkg",
    )
    assert res.predicted == 1 and res.done[0].outputs.mask == f"s3://{name}/out/scene_classes.tif"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=name, Prefix="out/")["Contents"]}
    assert keys == {
        "out/scene_classes.tif",
        "out/scene_classes.tif.aux.xml",
        "out/scene_classes.qml",
        "out/scene_classes.stac.json",
        "out/scene_confidence.tif",
        "out/scene_polygons.gpkg",
        "out/catalog.json",
    }
    # the same run on local disk gives the same mask, confidence and polygons
    predict_raster(local, tmp_path / "m.tif", tiny_model, OPTS, confidence=tmp_path / "c.tif")
    vectorize_raster(
        tmp_path / "m.tif", tmp_path / "v.gpkg", confidence=tmp_path / "c.tif", workers=0
    )
    # GDAL reads it back from the bucket, without looking for side-cars: the server is a thread of
    # this process and GDAL holds the GIL while it opens, so a side-car fetch would wait 30 s
    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(f"/vsis3/{name}/out/scene_classes.tif") as ds,
    ):
        assert ds.crs.to_epsg() == 32631 and ds.tags()["GEOSEG_MODEL"] == "test-none"
        np.testing.assert_array_equal(ds.read(), read(tmp_path / "m.tif"))
    s3.download_file(name, "out/scene_polygons.gpkg", str(tmp_path / "back.gpkg"))
    a, b = read_polygons(tmp_path / "v.gpkg"), read_polygons(tmp_path / "back.gpkg")
    assert len(a) == len(b) > 0 and normalized(a.geometry.values) == normalized(b.geometry.values)
    # resumable: the outputs are found in the bucket
    again = predict_many(
        [f"s3://{name}/in/scene.tif"],
        f"s3://{name}/out",
        tiny_model,
        OPTS,
        confidence=True,
        vector=".gpkg",
    )
    assert again.skipped == 1
    with pytest.raises(OutputExistsError, match="already exists"):
        storage.check_output(f"s3://{name}/out/scene_classes.tif", overwrite=False)


def test_an_interrupted_run_leaves_no_object_under_the_final_key(
    bucket: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, s3 = bucket
    url = f"s3://{name}/out/mask.tif"
    # a failure while the output is being built: nothing is uploaded
    with pytest.raises(RuntimeError, match="killed"), storage.published(url) as local:
        Path(local).write_bytes(b"half a file")
        raise RuntimeError("killed")
    assert not storage.exists(url)
    # a failure in the middle of a multipart upload: S3 shows nothing until the upload completes
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(0).integers(0, 255, 12 * 2**20, dtype=np.uint8).tobytes())
    sent = [0]

    def cut(n: int) -> None:
        sent[0] += n
        if sent[0] > 2**20:
            raise ConnectionError("connection lost")

    with pytest.raises(StorageError, match="uploading failed") as failed:
        storage.upload(big, url, callback=cut)
    assert sent[0] > 0 and not storage.exists(url)
    assert "Contents" not in s3.list_objects_v2(Bucket=name, Prefix="out/")
    # and its stored parts were aborted, not left to be billed
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert "may remain" not in str(failed.value)


def _big_file(tmp_path: Path) -> Path:
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(0).integers(0, 255, 12 * 2**20, dtype=np.uint8).tobytes())
    return big


def test_an_interrupted_upload_leaves_no_stored_parts(
    bucket: tuple[str, Any], tmp_path: Path
) -> None:
    """Ctrl-C (or SIGTERM, which geoseg turns into it) in the middle of a multipart upload: the
    parts already sent are aborted, not left in the bucket."""
    import os
    import signal

    name, s3 = bucket
    sent = [0]

    def interrupt(n: int) -> None:  # runs in a transfer thread, as the signal would
        sent[0] += n
        if sent[0] > 2**20 and sent[0] - n <= 2**20:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        storage.upload(_big_file(tmp_path), f"s3://{name}/out/big.bin", callback=interrupt)
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=name, Prefix="out/")


def test_a_store_gone_mid_upload_says_what_may_remain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """When the store goes away in the middle of an upload, geoseg cannot abort the parts it
    sent: the error says so, and how to remove them."""
    with local_bucket(monkeypatch) as (name, _, server):
        sent = [0]

        def store_goes_away(n: int) -> None:
            sent[0] += n
            if sent[0] > 2**20 and sent[0] - n <= 2**20:
                server.stop()

        with pytest.raises(StorageError, match="uploading failed") as failed:
            storage.upload(
                _big_file(tmp_path), f"s3://{name}/out/big.bin", callback=store_goes_away
            )
    message = str(failed.value)
    assert "may remain in the bucket" in message and "abort-multipart-upload" in message
    assert len(message.splitlines()) == 1


def test_bad_bucket_gets_a_clear_error(bucket: tuple[str, Any], tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"x")
    with pytest.raises(StorageError, match="check the bucket name"):
        storage.upload(f, "s3://no-such-bucket-here/a.bin")


def test_a_checkpoint_in_the_bucket_is_loaded_once_per_worker(bucket: tuple[str, Any]) -> None:
    from geoseg.models.default import default_model
    from geoseg.models.resolve import shared_model

    name, s3 = bucket
    s3.upload_file(str(default_model()), name, "models/landcover.safetensors")
    url = f"s3://{name}/models/landcover.safetensors"
    first = shared_model(url)
    assert first.config.num_classes == 5 and shared_model(url) is first
