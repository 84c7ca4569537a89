from __future__ import annotations

import json
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio import features
from rasterio.transform import from_origin

from geoseg.errors import (
    GeosegWarning,
    NoCRSWarning,
    OutputExistsError,
    RasterFormatError,
    RasterOpenError,
)
from geoseg.vectorize import vectorize_raster
from tests.vectorize.conftest import landcover, normalized, read

PIXEL_AREA = 0.25  # the shared test transform has 0.5 m pixels


def test_equals_gdal_polygonize_and_areas_are_exact(make_mask: Any, tmp_path: Path) -> None:
    m = landcover((300, 260), 1)
    m[:3, :3] = 255
    out = vectorize_raster(
        make_mask(m), tmp_path / "out.gpkg", block_size=64, workers=0, exclude=[]
    )
    df = read(out.path)
    assert out.features == len(df) and df.geometry.is_valid.all()
    assert df.crs.to_epsg() == 32631
    ref = [
        (shapely.geometry.shape(g), int(v))
        for g, v in features.shapes(
            m, mask=m != 255, transform=rasterio.open(make_mask(m, "again.tif")).transform
        )
    ]
    assert len(df) == len(ref)
    for c in range(4):
        mine = df[df.class_id == c]
        theirs = shapely.union_all([g for g, v in ref if v == c])
        assert (
            shapely.symmetric_difference(shapely.union_all(mine.geometry.values), theirs).area == 0
        )
        assert mine.area_m2.sum() == pytest.approx((m == c).sum() * PIXEL_AREA, rel=1e-12)
        assert set(mine.class_name) == {["background", "building", "road", "water"][c]}


@pytest.mark.parametrize("connectivity", [4, 8])
def test_result_does_not_depend_on_blocks_or_workers(
    make_mask: Any, tmp_path: Path, connectivity: int
) -> None:
    m = landcover((257, 301), 2)
    src = make_mask(m)
    runs = [
        (4096, 0, "thread"),
        (64, 0, "thread"),
        (128, 2, "thread"),
        (64, 3, "thread"),
        (128, 2, "process"),
        (96, 0, "thread"),
    ]
    sets = []
    for k, (block, workers, pool) in enumerate(runs):
        res = vectorize_raster(
            src,
            tmp_path / f"o{k}.fgb",
            block_size=block,
            workers=workers,
            pool=pool,
            connectivity=connectivity,
            exclude=["background"],
        )
        df = read(res.path)
        assert df.geometry.is_valid.all()
        sets.append((normalized(df.geometry.values), sorted(df.class_id)))
    assert all(s == sets[0] for s in sets[1:])


def test_a_region_on_every_seam_and_rings_in_rings(make_mask: Any, tmp_path: Path) -> None:
    m = np.zeros((200, 200), np.uint8)
    m[10:190, 10:190] = 1  # crosses every seam of 64-px blocks
    m[30:170, 30:170] = 0
    m[50:150, 50:150] = 1
    m[70:130, 70:130] = 0
    m[90:110, 90:110] = 1
    res = vectorize_raster(make_mask(m), tmp_path / "rings.gpkg", block_size=64, workers=0)
    df = read(res.path)
    assert len(df) == 3 and df.geometry.is_valid.all()
    counts = sorted(len(g.interiors) for g in df.geometry)
    assert counts == [0, 1, 1]
    assert df.area_m2.sum() == pytest.approx((m == 1).sum() * PIXEL_AREA)
    # seam vertices are gone: the outer ring is the 8 corners of two squares
    assert sorted(len(g.exterior.coords) for g in df.geometry) == [5, 5, 5]


def test_empty_all_nodata_and_one_pixel(make_mask: Any, tmp_path: Path) -> None:
    empty = vectorize_raster(
        make_mask(np.zeros((50, 40), np.uint8), "e.tif"), tmp_path / "e.gpkg", workers=0
    )
    assert empty.features == 0
    info = pyogrio.read_info(empty.path, layer="e")
    assert info["features"] == 0 and {"class_id", "class_name", "area_m2", "perimeter_m"} <= set(
        info["fields"]
    )
    nod = vectorize_raster(
        make_mask(np.full((20, 20), 255, np.uint8), "n.tif"), tmp_path / "n.fgb", workers=0
    )
    assert nod.features == 0
    one = vectorize_raster(
        make_mask(np.array([[2]], np.uint8), "one.tif"), tmp_path / "one.geojson", workers=0
    )
    df = read(one.path)
    assert len(df) == 1 and df.class_name[0] == "road" and df.crs.to_epsg() == 4326


def test_checkerboard_and_speckle(make_mask: Any, tmp_path: Path) -> None:
    m = ((np.indices((300, 300)).sum(0) % 2) + 1).astype(np.uint8)
    m[100:200, 100:200] = 3
    raw = vectorize_raster(make_mask(m), tmp_path / "raw.fgb", workers=0, block_size=128)
    assert (
        raw.features == 300 * 300 - 100 * 100 + 1
    )  # every pixel its own polygon, across seams too
    noisy = landcover((300, 300), 7)
    rng = np.random.default_rng(0)
    salt = rng.random(noisy.shape) < 0.1
    noisy[salt] = rng.integers(0, 4, int(salt.sum()))
    src = make_mask(noisy, "noisy.tif")
    speckled = vectorize_raster(src, tmp_path / "speckled.fgb", workers=0, block_size=128)
    sieved = vectorize_raster(src, tmp_path / "sieved.fgb", workers=0, block_size=128, sieve=8)
    assert sieved.features < speckled.features / 5
    assert read(sieved.path).geometry.is_valid.all()


def test_bad_inputs_get_clear_errors(make_mask: Any, make_raster: Any, tmp_path: Path) -> None:
    with pytest.raises(RasterFormatError, match="integer class ids"):
        vectorize_raster(
            make_raster(np.random.rand(1, 8, 8).astype("float32"), name="f.tif"),
            tmp_path / "x.gpkg",
        )
    with pytest.raises(RasterFormatError, match="single-band"):
        vectorize_raster(
            make_raster(np.zeros((3, 8, 8), np.uint8), name="rgb.tif"), tmp_path / "x.gpkg"
        )
    with pytest.raises(RasterFormatError, match=r"\.gpkg"):
        vectorize_raster(make_mask(np.ones((4, 4), np.uint8)), tmp_path / "x.shp")
    with pytest.raises(RasterOpenError, match=r"missing\.tif: no such file"):
        vectorize_raster(tmp_path / "missing.tif", tmp_path / "x.gpkg")
    with pytest.raises(RasterFormatError, match="no class named"):
        vectorize_raster(
            make_mask(np.ones((4, 4), np.uint8)), tmp_path / "x.gpkg", exclude=["forest"]
        )
    for tolerance in ("-1", "-0.5px", "abcpx", "nan", "inf"):
        with pytest.raises(RasterFormatError, match=r"simplify: expected a number >= 0"):
            vectorize_raster(
                make_mask(np.ones((4, 4), np.uint8)), tmp_path / "x.gpkg", simplify=tolerance
            )
    (tmp_path / "exists.gpkg").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match=r"exists\.gpkg: already exists"):
        vectorize_raster(make_mask(np.ones((4, 4), np.uint8)), tmp_path / "exists.gpkg")
    assert (tmp_path / "exists.gpkg").read_bytes() == b"keep me"


def test_no_crs_warns_and_geojson_refuses_to_guess(make_mask: Any, tmp_path: Path) -> None:
    src = make_mask(np.ones((8, 8), np.uint8), crs=None)
    with pytest.warns(NoCRSWarning):
        with pytest.raises(RasterFormatError, match="--keep-crs"):
            vectorize_raster(src, tmp_path / "x.geojson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoCRSWarning)
        assert vectorize_raster(src, tmp_path / "x.geojson", keep_crs=True, workers=0).features == 1
        assert vectorize_raster(src, tmp_path / "x.gpkg", workers=0).features == 1
    assert not list(tmp_path.glob(".*partial*"))


def test_a_failure_mid_stream_leaves_nothing(make_mask: Any, tmp_path: Path) -> None:
    src = make_mask(
        landcover((256, 256), 4), tiled=True, blockxsize=64, blockysize=64, compress="deflate"
    )
    data = src.read_bytes()
    src.write_bytes(data[: int(len(data) * 0.8)])  # the last tiles are gone
    with pytest.raises(RasterOpenError, match="cannot read"):
        vectorize_raster(src, tmp_path / "out.gpkg", block_size=64, workers=0)
    assert list(tmp_path.glob("out*")) == [] and not list(tmp_path.glob(".out*"))


def test_formats_layers_and_qgis_style(make_mask: Any, tmp_path: Path) -> None:
    src = make_mask(landcover((120, 100), 5))
    gpkg = vectorize_raster(src, tmp_path / "classes.gpkg", layout="per-class", workers=0)
    assert sorted(gpkg.layers) == ["building", "road", "water"]
    for name in gpkg.layers:
        assert set(read(gpkg.path, name).class_name) == {name}
    with sqlite3.connect(gpkg.path) as db:
        styles = dict(db.execute("SELECT f_table_name, styleQML FROM layer_styles").fetchall())
    assert (
        set(styles) == set(gpkg.layers)
        and 'attr="class_id"' in styles["road"]
        and 'label="road"' in styles["road"]
    )
    single = vectorize_raster(src, tmp_path / "one.gpkg", workers=0)
    with sqlite3.connect(single.path) as db:
        qml = db.execute("SELECT styleQML FROM layer_styles WHERE useAsDefault").fetchone()[0]
    assert all(f'label="{n}"' in qml for n in ("building", "road", "water"))
    with pytest.raises(RasterFormatError, match="GeoPackage"):
        vectorize_raster(src, tmp_path / "x.fgb", layout="per-class")
    pq = vectorize_raster(src, tmp_path / "out.parquet", workers=0)
    import geopandas as gpd
    import pyarrow.parquet as papq

    gdf = gpd.read_parquet(pq.path)
    assert len(gdf) == single.features and gdf.crs.to_epsg() == 32631
    assert json.loads(papq.read_schema(pq.path).metadata[b"geo"])["primary_column"] == "geometry"
    native = vectorize_raster(src, tmp_path / "native.geojson", keep_crs=True, workers=0)
    assert read(native.path).crs.to_epsg() == 32631 and native.crs == "EPSG:32631"
    # the result names the CRS of the file written: RFC 7946 GeoJSON is in EPSG:4326
    rfc = vectorize_raster(src, tmp_path / "rfc.geojson", workers=0)
    assert read(rfc.path).crs.to_epsg() == 4326 and rfc.crs == "EPSG:4326"


def test_true_metres_in_a_geographic_crs(make_mask: Any, tmp_path: Path) -> None:
    m = np.zeros((100, 100), np.uint8)
    m[20:80, 10:90] = 1
    t = from_origin(4.0, 52.0, 1e-4, 1e-4)
    res = vectorize_raster(
        make_mask(m, transform=t, crs="EPSG:4326"), tmp_path / "g.gpkg", workers=0
    )
    df = read(res.path)
    utm = df.to_crs(32631)
    assert df.area_m2[0] == pytest.approx(utm.area[0], rel=2e-3)
    assert df.perimeter_m[0] == pytest.approx(utm.length[0], rel=2e-3)


def test_mean_confidence_and_cleanup_options(
    make_mask: Any, make_raster: Any, tmp_path: Path
) -> None:
    m = np.zeros((60, 60), np.uint8)
    m[5:25, 5:25] = 1
    m[10:14, 10:14] = 0  # a 16-pixel hole (4 m²)
    m[40:42, 40:42] = 2  # a 4-pixel road patch (1 m²)
    conf = np.full((1, 60, 60), 200, np.uint8)
    src = make_mask(m)
    with pytest.warns(GeosegWarning, match="not written by geoseg predict"):
        res = vectorize_raster(
            src,
            tmp_path / "c.gpkg",
            confidence=make_raster(conf, name="conf.tif"),
            workers=0,
            fill_holes=5,
            min_area=2,
        )
    df = read(res.path)
    assert df.class_name.tolist() == ["building"]
    assert len(df.geometry[0].interiors) == 0 and df.area_m2[0] == pytest.approx(400 * PIXEL_AREA)
    assert df.mean_confidence[0] == pytest.approx(200 / 255)
    with pytest.raises(RasterFormatError, match="grid"):
        vectorize_raster(
            src, tmp_path / "d.gpkg", confidence=make_raster(conf[:, :30], name="small.tif")
        )
    # an image or the mask itself is no confidence raster
    rgb = make_raster(np.concatenate([conf] * 3), name="rgb.tif")
    with pytest.raises(RasterFormatError, match=r"expected 1 band \(confidence\) or 4"):
        vectorize_raster(src, tmp_path / "e.gpkg", confidence=rgb)
    with rasterio.open(src, "r+") as ds:
        ds.set_band_description(1, "class")
    with pytest.raises(RasterFormatError, match="a class mask, not a confidence raster"):
        vectorize_raster(src, tmp_path / "f.gpkg", confidence=src)
    assert not list(tmp_path.glob("[def].gpkg"))


def test_simplified_coverage_has_no_gaps_or_overlaps(make_mask: Any, tmp_path: Path) -> None:
    m = landcover((200, 180), 6)
    res = vectorize_raster(
        make_mask(m), tmp_path / "s.gpkg", simplify="1.5px", block_size=64, workers=0, exclude=[]
    )
    df = read(res.path)
    assert df.geometry.is_valid.all()
    # no overlaps (areas add up to the union) and no gaps (the union is the whole raster)
    union = shapely.union_all(df.geometry.values)
    assert df.geometry.area.sum() == pytest.approx(union.area, rel=1e-9)
    assert union.area == pytest.approx(200 * 180 * PIXEL_AREA, rel=1e-9)
    assert union.equals(shapely.box(*union.bounds))
    plain = read(
        vectorize_raster(make_mask(m, "p.tif"), tmp_path / "p.gpkg", workers=0, exclude=[]).path
    )
    assert (
        shapely.get_num_coordinates(df.geometry.values).sum()
        < 0.8 * shapely.get_num_coordinates(plain.geometry.values).sum()
    )


def test_regularize_buildings(make_mask: Any, tmp_path: Path) -> None:
    true = shapely.affinity.rotate(shapely.box(20, 20, 60, 44), 23, origin="center")
    m = features.rasterize([(true, 1)], out_shape=(80, 80)).astype(np.uint8)
    res = vectorize_raster(make_mask(m), tmp_path / "b.gpkg", regularize=True, workers=0)
    g = read(res.path).geometry[0]
    assert g.is_valid and len(g.exterior.coords) <= 9


def test_round_trip_of_a_real_vector_layer(
    shared_data: Path, tmp_path: Path, make_mask: Any
) -> None:
    """Rasterize a real polygon layer, vectorize it, and get the same shapes back."""
    poly = pyogrio.read_dataframe(shared_data / "georust-gdal-fixtures" / "poly.gpkg")
    x0, y0, x1, y1 = poly.total_bounds
    t = from_origin(x0 - 20, y1 + 20, 5, 5)
    shape = (int((y1 - y0 + 40) / 5), int((x1 - x0 + 40) / 5))
    m = features.rasterize([(g, 1) for g in poly.geometry], out_shape=shape, transform=t).astype(
        np.uint8
    )
    res = vectorize_raster(
        make_mask(m, transform=t, crs=poly.crs.to_wkt()), tmp_path / "rt.gpkg", workers=0
    )
    back = read(res.path)
    again = features.rasterize([(g, 1) for g in back.geometry], out_shape=shape, transform=t)
    np.testing.assert_array_equal(again, m)  # pixel-exact
    truth = shapely.union_all(poly.geometry.values)
    got = shapely.union_all(back.geometry.values)
    assert got.intersection(truth).area / got.union(truth).area > 0.97


def test_regularize_8_connected_buildings_stays_valid(tmp_path: Path) -> None:
    """Buildings joined only at a pixel corner form one multipolygon under 8-connectivity; squared
    up separately, its parts overlapped and the clean-up raised a GEOS TopologyException."""
    # a 94 x 71 crop of the bundled model's map of the Rotterdam sample scene
    mask = Path(__file__).parents[1] / "data" / "diagonal-buildings.tif"
    res = vectorize_raster(mask, tmp_path / "b.gpkg", regularize=True, connectivity=8, workers=0)
    df = read(res.path)
    geoms = np.asarray(df.geometry.values)
    assert len(geoms) > 10 and shapely.is_valid(geoms).all()
    # still a coverage: no two polygons share area
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(shapely.area(geoms).sum(), rel=1e-9)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("suffix", [".gpkg", ".fgb"])
def test_regularized_polygons_have_the_layer_geometry_type(
    connectivity: int, suffix: str, tmp_path: Path
) -> None:
    """A squared-up footprint cut by its neighbours fell into pieces: a MultiPolygon in a Polygon
    layer (GeoPackage Req 32), refused outright by FlatGeobuf; under 8-connectivity, a
    multipolygon squared into one piece came back a Polygon."""
    # a 94 x 78 crop of the bundled model's map of the Rotterdam sample scene
    mask = Path(__file__).parents[1] / "data" / "split-building.tif"
    dst = tmp_path / f"b{suffix}"
    res = vectorize_raster(mask, dst, regularize=True, connectivity=connectivity, workers=0)
    declared = pyogrio.read_info(dst, layer="b")["geometry_type"]
    assert declared == ("Polygon" if connectivity == 4 else "MultiPolygon")
    geoms = np.asarray(read(res.path).geometry.values)
    assert len(geoms) > 15 and set(shapely.get_type_id(geoms)) == {
        shapely.GeometryType.POLYGON if connectivity == 4 else shapely.GeometryType.MULTIPOLYGON
    }
    assert shapely.is_valid(geoms).all()
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(shapely.area(geoms).sum(), rel=1e-9)


def test_mean_confidence_from_a_probabilities_cog_with_nodata(
    make_mask: Any, tmp_path: Path
) -> None:
    """geoseg predict's probabilities mark no data with nodata 0 (a valid 0 is stored as 1): the
    winning probability of every valid pixel is read as it was written."""
    from rasterio.windows import Window

    from geoseg.io.writer import COGWriter

    m = np.full((40, 40), 255, np.uint8)
    m[:, 10:] = 1
    src = make_mask(m, nodata=255)
    probs = np.zeros((4, 40, 40), np.uint8)
    probs[1, :, 10:], probs[0, :, 10:] = 204, 51  # classes 2 and 3 at 0, stored as 1
    with rasterio.open(src) as ds:
        geo = {"transform": ds.transform, "crs": ds.crs}
    with COGWriter(
        tmp_path / "p.tif",
        height=40,
        width=40,
        count=4,
        dtype="uint8",
        mask=True,
        tags={"GEOSEG_MODEL": "unet-test"},
        **geo,
    ) as out:
        out.write(probs, Window(0, 0, 40, 40), m != 255)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not written by geoseg predict"
        res = vectorize_raster(src, tmp_path / "c.gpkg", confidence=tmp_path / "p.tif", workers=0)
    df = read(res.path)
    assert df.class_id.tolist() == [1] and df.mean_confidence[0] == pytest.approx(204 / 255)
