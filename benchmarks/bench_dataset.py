"""Benchmark the GeoTIFF dataset against plain rasterio windowed reads of the same windows.

Writes a large RGB GeoTIFF (tiled 512, DEFLATE, like a COG), draws chip queries with TorchGeo's
``RandomGeoSampler``, and times in one run, alternating, each through a ``DataLoader`` with the
same number of workers:

* geoseg's ``GeoTiffImages`` (a TorchGeo ``RasterDataset``) indexed by those queries;
* the plain TorchGeo read path (``rasterio.merge``, what ``RasterDataset`` does without geoseg's
  single-file shortcut), for reference;
* a minimal ``Dataset`` that opens the file once per worker and reads the same pixel windows
  with ``rasterio`` (the baseline).

Prints samples/s per reader (median of ``--repeat`` runs) and the ratio to the baseline.

Usage: python benchmarks/bench_dataset.py [--size 8192] [--chip 256] [--samples 2000]
       [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window, from_bounds
from torch.utils.data import DataLoader, Dataset
from torchgeo.samplers import RandomGeoSampler

from geoseg.datasets.geotiff import GeoTiffImages


def make_image(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32631",
        transform=rasterio.transform.from_origin(600000, 5800000, 0.5, 0.5),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        base = rng.integers(0, 255, size=(3, 512, size), dtype=np.uint8)
        for r in range(0, size, 512):
            dst.write(np.roll(base, r, axis=2), window=Window(0, r, size, 512))


class PlainWindows(Dataset[dict[str, torch.Tensor]]):
    """The baseline: one rasterio handle per worker, ``read(window=...)``."""

    def __init__(self, path: Path, windows: list[Window]) -> None:
        self.path, self.windows, self.src = path, windows, None

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.src is None:
            self.src = rasterio.open(self.path)
        return {"image": torch.from_numpy(self.src.read(window=self.windows[i]).astype(np.float32))}


class Queries(torch.utils.data.Sampler[Any]):
    def __init__(self, queries: list[Any]) -> None:
        self.queries = queries

    def __len__(self) -> int:
        return len(self.queries)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.queries)


def geo_collate(samples: list[dict[str, Any]]) -> torch.Tensor:
    return torch.stack([s["image"] for s in samples])


def timed(loader: DataLoader[Any]) -> float:
    start = time.perf_counter()
    n = 0
    for batch in loader:
        n += len(batch) if isinstance(batch, torch.Tensor) else len(batch["image"])
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--chip", type=int, default=256)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-ds-") as tmp:
        path = Path(tmp, "large.tif")
        make_image(path, args.size)
        ds = GeoTiffImages(paths=[str(path)])
        queries = list(RandomGeoSampler(ds, size=args.chip, length=args.samples, units=_units()))
        with rasterio.open(path) as src:
            transform = src.transform
        windows = []
        for q in queries:
            x, y = q[0], q[1]
            w = from_bounds(x.start, y.start, x.stop, y.stop, transform)
            windows.append(Window(round(w.col_off), round(w.row_off), args.chip, args.chip))
        common = dict(
            batch_size=args.batch_size, num_workers=args.workers, persistent_workers=False
        )
        slow = GeoTiffImages(paths=[str(path)])
        slow.cache = False
        readers = {
            "rasterio windows (baseline)": lambda: DataLoader(
                PlainWindows(path, windows), **common
            ),
            "geoseg GeoTiffImages": lambda: DataLoader(
                ds, sampler=Queries(queries), collate_fn=geo_collate, **common
            ),
            "TorchGeo merge path": lambda: DataLoader(
                slow, sampler=Queries(queries), collate_fn=geo_collate, **common
            ),
        }
        timed(readers["rasterio windows (baseline)"]())  # warm the OS page cache
        rates: dict[str, list[float]] = {k: [] for k in readers}
        for _ in range(args.repeat):
            for name, make in readers.items():
                rates[name].append(timed(make()))
        base = statistics.median(rates["rasterio windows (baseline)"])
        print(
            f"{args.size}x{args.size} RGB GeoTIFF, {args.samples} random {args.chip}px chips, "
            f"DataLoader with {args.workers} workers, batch {args.batch_size}, median of "
            f"{args.repeat}"
        )
        for name, values in rates.items():
            med = statistics.median(values)
            print(
                f"  {name:<28} {med:8.1f} samples/s   ratio to baseline {med / base:5.2f}   "
                f"(runs: {', '.join(f'{v:.0f}' for v in values)})"
            )


def _units() -> Any:
    from torchgeo.samplers import Units

    return Units.PIXELS


if __name__ == "__main__":
    main()
