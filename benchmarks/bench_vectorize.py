"""Benchmark ``geoseg vectorize`` against GDAL's polygonize and rasterio + geopandas, in one run.

Builds 6-class masks (background, buildings, roads, water, trees, fields, plus speckle) of 8192²
and 16384², tiled and DEFLATE-compressed like ``geoseg predict`` writes them, and times, each in a
fresh process whose peak memory (summed over its process tree) is sampled:

* ``gdal_polygonize.py`` (GDAL's command line, one commit per feature), when it is installed;
* GDAL's polygonize into a GeoPackage inside one transaction (needs GDAL's Python bindings);
* ``rasterio.features.shapes`` over the whole mask + a GeoDataFrame written with ``to_file``;
* ``geoseg vectorize`` to GeoPackage, and to GeoJSON and FlatGeobuf for polygons/s.

Usage: python benchmarks/bench_vectorize.py [--sizes 8192 16384] [--workers N]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import rasterio
from rasterio.windows import Window
from scipy import ndimage

from geoseg.classes import ClassTable

CLASSES = ClassTable.from_names(["background", "building", "road", "water", "tree", "field"])


def make_mask(path: Path, size: int, seed: int = 0) -> Path:
    """Land-cover-like class mask, written 1024 rows at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(3, size // 64 + 3, size // 64 + 3)).astype(np.float32)
    coarse = np.stack([ndimage.gaussian_filter(c, 1.5) for c in coarse])
    coarse = (coarse - coarse.mean(axis=(1, 2), keepdims=True)) / coarse.std(
        axis=(1, 2), keepdims=True
    )
    n_buildings = size * size // 6000
    bx, by = rng.integers(0, size, n_buildings), rng.integers(0, size, n_buildings)
    bw, bh = rng.integers(6, 30, n_buildings), rng.integers(6, 30, n_buildings)
    roads_r = np.sort(rng.choice(size, size // 600, replace=False))
    roads_c = np.sort(rng.choice(size, size // 600, replace=False))
    profile = dict(
        driver="GTiff",
        height=size,
        width=size,
        count=1,
        dtype="uint8",
        nodata=255,
        crs="EPSG:32631",
        transform=rasterio.transform.from_origin(600000, 5800000, 0.5, 0.5),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, 1024):
            h = min(1024, size - r)
            yy, xx = np.mgrid[r : r + h, 0:size].astype(np.float32) / 64
            f = [
                ndimage.map_coordinates(c, [yy.ravel(), xx.ravel()], order=1).reshape(h, size)
                for c in coarse
            ]
            m = np.zeros((h, size), np.uint8)
            m[f[0] > 0.5] = 5  # fields
            m[f[1] > 0.8] = 4  # trees
            m[f[2] > 1.2] = 3  # water
            sel = (by >= r - 30) & (by < r + h)
            for x, y, w, hh in zip(bx[sel], by[sel], bw[sel], bh[sel], strict=True):
                m[max(y - r, 0) : max(y - r + hh, 0), x : x + w] = 1
            for rr in roads_r[(roads_r >= r - 6) & (roads_r < r + h)]:
                m[max(rr - r, 0) : max(rr - r + 6, 0)] = 2
            m[:, roads_c[:, None] + np.arange(6)[None, :] - 0] = 2
            speckle = rng.random((h, size)) < 2e-4
            m[speckle] = rng.integers(1, 6, int(speckle.sum()))
            dst.write(m, 1, window=Window(0, r, size, h))
        dst.write_colormap(1, CLASSES.colormap())
        dst.update_tags(CLASS_NAMES=CLASSES.to_json())
    return path


def measured(cmd: list[str], out: Path) -> tuple[float, float]:
    """Seconds (a run on its own) and peak memory (a second run, sampled) of a command writing
    ``out``.

    Memory is PSS summed over the process tree (MB), so pages that forked workers share with their
    parent count once; sampling it reads /proc/*/smaps, which costs CPU, hence the separate run.
    ``out`` is removed before each run, so both runs do the whole job.
    """
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{cmd[:3]} failed:\n{done.stdout}{done.stderr}")
    out.unlink()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while proc.poll() is None:
        total = 0
        try:
            for p in [proc, *proc.children(recursive=True)]:
                total += p.memory_full_info().pss
        except psutil.Error:
            pass
        peak = max(peak, total / 2**20)
        time.sleep(0.05)
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed on its second run")
    return seconds, peak


def gdal_python() -> str | None:
    """An interpreter with GDAL's Python bindings (GDAL's own scripts use one)."""
    candidates = [sys.executable, "/usr/bin/python3", shutil.which("python3") or ""]
    script = shutil.which("gdal_polygonize.py")
    if script:
        first = Path(script).read_text(errors="replace").splitlines()[0]
        if first.startswith("#!"):
            candidates.insert(1, first[2:].strip().split()[0])
    for exe in candidates:
        if (
            exe
            and subprocess.run(
                [exe, "-c", "from osgeo import gdal"], capture_output=True
            ).returncode
            == 0
        ):
            return exe
    return None


TRANSACTION = textwrap.dedent("""
    import sys
    from osgeo import gdal, ogr, osr
    gdal.UseExceptions()
    src = gdal.Open(sys.argv[1]); band = src.GetRasterBand(1)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(sys.argv[2])
    srs = osr.SpatialReference(wkt=src.GetProjection())
    layer = ds.CreateLayer("polygons", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    layer.StartTransaction()
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0, [])
    layer.CommitTransaction()
    ds = None
""")

SHAPES = textwrap.dedent("""
    import sys, geopandas as gpd, rasterio
    from rasterio import features
    from shapely.geometry import shape
    with rasterio.open(sys.argv[1]) as ds:
        m = ds.read(1); t = ds.transform; crs = ds.crs
    rows = [(shape(g), int(v)) for g, v in features.shapes(m, mask=m != 255, transform=t)]
    gdf = gpd.GeoDataFrame(
        {"class_id": [v for _, v in rows]}, geometry=[g for g, _ in rows], crs=crs
    )
    gdf.to_file(sys.argv[2], driver="GPKG")
""")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--keep", action="store_true", help="keep the generated files (their folder is printed)"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="geoseg-vbench-"))
    if not args.keep:  # the rasters and outputs take hundreds of MB
        atexit.register(shutil.rmtree, tmp, True)
    gdal_cli = shutil.which("gdal_polygonize.py") or shutil.which("gdal_polygonize")
    gpy = gdal_python()
    geoseg_cli = [
        sys.executable,
        "-m",
        "geoseg",
        "-q",
        "vectorize",
        "--keep-all",
        "--vector-workers",
        str(args.workers),
    ]
    print(f"{os.cpu_count()} cores, geoseg workers {args.workers}; files in {tmp}")
    for size in args.sizes:
        mask = make_mask(tmp / f"mask_{size}.tif", size)
        print(
            f"\n{size}² mask ({mask.stat().st_size / 2**20:.0f} MB on disk), every class "
            "polygonized (nodata excluded)"
        )
        results: dict[str, tuple[float, float]] = {}
        if gdal_cli:
            out = tmp / f"gdal_cli_{size}.gpkg"
            s, m = measured(
                [gdal_cli, "-q", str(mask), "-f", "GPKG", str(out), "polygons", "class_id"], out
            )
            results["gdal_polygonize.py"] = (s, m)
        if gpy:
            out = tmp / f"gdal_tx_{size}.gpkg"
            s, m = measured([gpy, "-c", TRANSACTION, str(mask), str(out)], out)
            results["GDAL polygonize, one transaction"] = (s, m)
        out = tmp / f"shapes_{size}.gpkg"
        s, m = measured([sys.executable, "-c", SHAPES, str(mask), str(out)], out)
        results["rasterio shapes + geopandas"] = (s, m)
        out = tmp / f"geoseg_{size}.gpkg"
        s, m = measured([*geoseg_cli, str(mask), str(out)], out)
        results["geoseg vectorize (GeoPackage)"] = (s, m)
        import pyogrio

        n = pyogrio.read_info(out, layer=out.stem)["features"]
        for name, (s, m) in results.items():
            print(f"   {name:34s} {s:7.2f} s  {m:6.0f} MB peak")
        g = results["geoseg vectorize (GeoPackage)"][0]
        for name, (s, _) in results.items():
            if not name.startswith("geoseg"):
                print(f"   geoseg vs {name}: {s / g:.2f}x faster")
        print(f"   {n} polygons, geoseg {n / g:,.0f} polygons/s to GeoPackage")
        for ext in ("geojson", "fgb", "parquet"):
            s, m = measured(
                [*geoseg_cli, str(mask), str(tmp / f"geoseg_{size}.{ext}")],
                tmp / f"geoseg_{size}.{ext}",
            )
            print(
                f"   geoseg vectorize to .{ext:8s} {s:7.2f} s  {m:6.0f} MB peak  {n / s:,.0f} "
                "polygons/s"
            )


if __name__ == "__main__":
    main()
