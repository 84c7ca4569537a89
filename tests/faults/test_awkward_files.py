"""Files GDAL opens but cannot (or should not) read as asked: each gets one line that says what is
really wrong, never "unexpected", never "See previous exception"."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from geoseg.cli import cli
from geoseg.errors import RasterOpenError
from geoseg.io.reader import RasterReader
from tests.conftest import write_raster

Entry = tuple[int, int, list[int | str]]


def _tiff(entries: list[Entry], blobs: list[bytes]) -> bytes:
    """A little-endian TIFF with one directory. Entries are ``(tag, type, values)`` with type 3
    (SHORT) or 4 (LONG); a value ``"blob:i"`` is the offset of ``blobs[i]``."""
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    offsets = []
    for blob in blobs:
        offsets.append(len(out))
        out += blob + b"\x00" * (len(blob) % 2)
    ifd_at = len(out)
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd, extra = bytearray(struct.pack("<H", len(entries))), bytearray()
    for tag, kind, values in sorted(entries, key=lambda e: e[0]):
        numbers = [offsets[int(v[5:])] if isinstance(v, str) else v for v in values]
        raw = b"".join(struct.pack("<H" if kind == 3 else "<I", v) for v in numbers)
        if len(raw) <= 4:
            ifd += struct.pack("<HHI", tag, kind, len(numbers)) + raw.ljust(4, b"\x00")
        else:
            ifd += struct.pack("<HHII", tag, kind, len(numbers), extra_at + len(extra))
            extra += raw
    out[4:8] = struct.pack("<I", ifd_at)
    return bytes(out + ifd + b"\x00\x00\x00\x00" + extra)


def ojpeg_tiff(path: Path) -> Path:
    """16x16 RGB with old-style JPEG compression (6): a JPEG stream the directory points to."""
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90, subsampling=0)
    jpeg = buffer.getvalue()
    entries: list[Entry] = [
        (256, 3, [16]),  # width
        (257, 3, [16]),  # height
        (258, 3, [8, 8, 8]),  # bits per sample
        (259, 3, [6]),  # compression: old-style JPEG
        (262, 3, [6]),  # photometric: YCbCr
        (273, 4, ["blob:0"]),  # strip offsets
        (277, 3, [3]),  # samples per pixel
        (278, 3, [16]),  # rows per strip
        (279, 4, [len(jpeg)]),  # strip byte counts
        (513, 4, ["blob:0"]),  # JPEGInterchangeFormat
        (514, 4, [len(jpeg)]),  # JPEGInterchangeFormatLength
    ]
    path.write_bytes(_tiff(entries, [jpeg]))
    return path


def jpeg12_tiff(path: Path) -> Path:
    """An 8x8 grey 12-bit JPEG-compressed TIFF holding 2112 everywhere: one block, DC only, with
    one-symbol Huffman tables (a 12-bit stream written by hand; GDAL builds without 12-bit JPEG
    cannot decode it)."""

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    one_code = bytes([1] + [0] * 15)  # one code of length 1
    jpeg = b"\xff\xd8"
    jpeg += segment(0xDB, b"\x00" + b"\x01" * 64)  # quantization: all 1
    jpeg += segment(0xC1, bytes([12]) + struct.pack(">HH", 8, 8) + bytes([1, 1, 0x11, 0]))
    jpeg += segment(0xC4, b"\x00" + one_code + bytes([10]) + b"\x10" + one_code + bytes([0]))
    jpeg += segment(0xDA, bytes([1, 1, 0x00, 0, 63, 0]))
    # DC: category 10 ("0"), 512 = 8 x (2112 - 2048) ("1000000000"); AC: end of block ("0")
    jpeg += b"\x40\x0f\xff\xd9"
    entries: list[Entry] = [
        (256, 3, [8]),
        (257, 3, [8]),
        (258, 3, [12]),
        (259, 3, [7]),  # compression: JPEG
        (262, 3, [1]),  # photometric: black is zero
        (273, 4, ["blob:0"]),
        (277, 3, [1]),
        (278, 3, [8]),
        (279, 4, [len(jpeg)]),
    ]
    path.write_bytes(_tiff(entries, [jpeg]))
    return path


def missing_source_vrt(path: Path) -> Path:
    path.write_text(
        '<VRTDataset rasterXSize="64" rasterYSize="64">\n'
        "  <SRS>EPSG:32631</SRS>\n"
        "  <GeoTransform>500000, 0.5, 0, 5700000, 0, -0.5</GeoTransform>\n"
        '  <VRTRasterBand dataType="Byte" band="1">\n'
        "    <SimpleSource>\n"
        '      <SourceFilename relativeToVRT="1">gone.tif</SourceFilename>\n'
        "      <SourceBand>1</SourceBand>\n"
        '      <SrcRect xOff="0" yOff="0" xSize="64" ySize="64"/>\n'
        '      <DstRect xOff="0" yOff="0" xSize="64" ySize="64"/>\n'
        "    </SimpleSource>\n"
        "  </VRTRasterBand>\n"
        "</VRTDataset>\n"
    )
    return path


def _info(path: Path) -> tuple[int, list[str]]:
    res = CliRunner().invoke(cli, ["-q", "info", str(path)])
    return res.exit_code, res.output.strip().splitlines()


def test_info_describes_an_ojpeg_tiff(tmp_path: Path) -> None:
    path = ojpeg_tiff(tmp_path / "old.tif")
    res = CliRunner().invoke(cli, ["-q", "info", "--json", str(path)])
    assert res.exit_code == 0, res.output
    import json

    described = json.loads(res.output)
    assert described["compression"] == "OJPEG" and described["interleave"] == "PIXEL"
    assert described["warnings"][-1].startswith("old-style JPEG (OJPEG) compression")


def test_a_12_bit_jpeg_this_gdal_cannot_decode_is_named(tmp_path: Path) -> None:
    path = jpeg12_tiff(tmp_path / "j12.tif")
    try:
        with rasterio.open(path) as ds:
            values = ds.read(1)
    except rasterio.errors.RasterioIOError:
        values = None
    if values is not None:  # a GDAL with 12-bit JPEG: the file must read as written
        assert (values == 2112).all()
        pytest.skip("this GDAL decodes 12-bit JPEG: nothing to refuse")
    code, lines = _info(path)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"Error: {path}: holds 12-bit JPEG-compressed pixels, which this")
    assert "truncated" not in lines[0] and "previous exception" not in lines[0]
    with (
        RasterReader(path) as reader,
        pytest.raises(RasterOpenError, match=r"12-bit JPEG.*\(JPEGLib:Unsupported JPEG data prec"),
    ):
        reader.read(Window(0, 0, 8, 8))


def test_a_vrt_whose_source_is_missing_is_named(tmp_path: Path) -> None:
    path = missing_source_vrt(tmp_path / "mosaic.vrt")
    code, lines = _info(path)
    assert code == 1, lines
    assert lines == [
        f"Error: {path}: a file it refers to is missing ({tmp_path / 'gone.tif'}: No such file or "
        "directory); expected every source file of a VRT (or a side-car such as .ovr or .msk) in "
        "place. Restore the file or rebuild the VRT (gdalbuildvrt)"
    ]


def _truncated_cog(path: Path, rows: int = 512) -> Path:
    """A float confidence COG with overviews, cut off in its full-resolution tiles (a COG keeps
    its overviews' pixels first)."""
    values = (np.random.default_rng(0).integers(0, 5, (1, rows, rows)) / 4).astype(np.float32)
    whole = write_raster(
        path.with_name("whole.tif"), values, driver="COG", blocksize=128, overview_count=2
    )
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) * 8 // 10])
    return path


@pytest.fixture
def mask(tmp_path: Path) -> Path:
    data = np.zeros((1, 512, 512), np.uint8)
    data[0, 100:300, 50:400] = 1
    return write_raster(tmp_path / "mask.tif", data, nodata=255)


@pytest.mark.parametrize("look", [1024, 64])  # read whole when opened; read by the block workers
def test_vectorize_with_a_truncated_confidence_is_one_line(
    tmp_path: Path, mask: Path, look: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoseg.vectorize import source

    monkeypatch.setattr(source, "LOOK", look)  # 64: the opening check reads an overview only
    conf = _truncated_cog(tmp_path / "conf.tif")
    res = CliRunner().invoke(
        cli, ["-q", "vectorize", str(mask), str(tmp_path / "p.gpkg"), "--confidence", str(conf)]
    )
    assert res.exit_code == 1, res.output
    *warned, error = res.output.strip().splitlines()  # a raster not tagged by geoseg is warned of
    assert all(w.startswith(f"Warning: {conf}: not written by geoseg predict") for w in warned)
    assert error.startswith(f"Error: --confidence {conf}: could not read pixels")
    assert "bytes, expected" in error and "The file may be truncated or corrupt" in error
    assert not (tmp_path / "p.gpkg").exists()


@pytest.mark.parametrize(
    ("dtype", "values", "found"),
    [
        ("int16", (-4000, 4000), "-4000..4000"),
        ("float32", (-0.5, 1.0), "-0.5..1"),
        ("uint16", (0, 255), "0..255"),
    ],
)
def test_vectorize_refuses_a_confidence_that_holds_no_probabilities(
    tmp_path: Path, mask: Path, dtype: str, values: tuple[float, float], found: str
) -> None:
    conf = np.full((1, 512, 512), values[1], dtype)
    conf[0, :4, :4] = values[0]
    path = write_raster(tmp_path / "conf.tif", conf)
    res = CliRunner().invoke(
        cli, ["-q", "vectorize", str(mask), str(tmp_path / "p.gpkg"), "--confidence", str(path)]
    )
    assert res.exit_code == 1, res.output
    assert res.output.strip().splitlines() == [
        f"Error: {path}: confidence values reach {found}; expected probabilities, 0..1 (or 0..255 "
        "in a uint8 raster). Pass the --confidence or --probabilities output of the `geoseg "
        "predict` run, or rescale the raster to 0..1"
    ]


def test_vectorize_takes_probabilities_with_nodata(tmp_path: Path) -> None:
    import pyogrio

    data = np.full((1, 512, 512), 255, np.uint8)
    data[0, 100:300, 50:400] = 1
    mask = write_raster(tmp_path / "mask.tif", data, nodata=255)
    conf = np.full((1, 512, 512), 0.75, np.float32)
    conf[0, :10] = -9999  # nodata (where the mask has none), not a probability
    path = write_raster(tmp_path / "conf.tif", conf, nodata=-9999)
    res = CliRunner().invoke(
        cli, ["-q", "vectorize", str(mask), str(tmp_path / "p.gpkg"), "--confidence", str(path)]
    )
    assert res.exit_code == 0, res.output
    frame = pyogrio.read_dataframe(tmp_path / "p.gpkg")
    assert frame["mean_confidence"].tolist() == [pytest.approx(0.75)]


def test_a_constant_image_is_not_advised_a_zero_scale(tmp_path: Path) -> None:
    from geoseg.errors import InputCompatibilityWarning
    from geoseg.inference.compat import check_input
    from geoseg.inference.options import PredictOptions
    from tests.faults.conftest import tiny_checkpoint

    blank = write_raster(tmp_path / "blank.tif", np.zeros((3, 100, 100), np.uint8))
    from geoseg.models.config import read_config

    config = read_config(tiny_checkpoint(tmp_path / "m.safetensors"))
    with RasterReader(blank) as reader, pytest.warns(InputCompatibilityWarning) as caught:
        check_input(reader, config, PredictOptions())
    (message,) = [str(w.message) for w in caught if w.category is InputCompatibilityWarning]
    assert "--scale" not in message
    assert message == (
        f"{blank}: input unlike the model's training data: values 0..0 (2-98 %; model: 0..255); "
        "the map may be confidently wrong. Fix: every sampled pixel holds 0: check that the input "
        "is not blank, or mark that value as nodata (gdal_edit.py -a_nodata 0 FILE), or --strict "
        "to refuse such input"
    )
