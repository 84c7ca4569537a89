"""What the safety of outputs costs: a COG written with verification and fsync, against the same
COG without them.

Writes a ``--size`` x ``--size`` uint8 class mask through ``COGWriter`` in row bands, in one run,
alternating: with the published-file check (last tile and overviews decoded) and ``fsync``, and
with both switched off (the baseline). Prints the median seconds of ``--repeat`` runs and the ratio.

Usage: python benchmarks/bench_atomic.py [--size 8192] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

import geoseg.io.atomic as atomic
import geoseg.io.writer as writer
from geoseg.classes import ClassTable


def write(path: Path, data: np.ndarray) -> float:
    start = time.perf_counter()
    n = data.shape[0]
    with writer.COGWriter(
        path,
        height=n,
        width=n,
        count=1,
        dtype="uint8",
        transform=Affine(0.5, 0, 0, 0, -0.5, 0),
        crs=CRS.from_epsg(32631),
        nodata=255,
        classes=ClassTable.default(6),
        resampling="mode",
        overwrite=True,
    ) as out:
        for row in range(0, n, 512):
            out.write(data[None, row : row + 512], Window(0, row, n, min(512, n - row)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 6, size=(args.size // 64, args.size // 64), dtype=np.uint8)
    data = np.kron(
        blocks, np.ones((64, 64), np.uint8)
    )  # class regions, compressible like a real mask
    safe, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            safe.append(write(Path(tmp) / "safe.tif", data))
            with (
                mock.patch.object(writer, "verify_cog", lambda p: None),
                mock.patch.object(atomic, "_fsync", lambda p: None),
            ):
                plain.append(write(Path(tmp) / "plain.tif", data))
    s, p = statistics.median(safe), statistics.median(plain)
    print(
        f"{args.size}x{args.size} class mask: verified+fsync {s:.2f} s, baseline {p:.2f} s, ratio "
        f"{s / p:.3f}"
    )


if __name__ == "__main__":
    main()
