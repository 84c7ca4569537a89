"""Benchmark the Dask scale-out and object storage against in-process runs, in one run.

With the bundled model on textured RGB rasters (tiled 512, DEFLATE), prints:

1. many rasters (``--count`` x ``--size``²), one task each: ``local:2`` (two worker processes, one
   thread each) and ``local:1`` (one worker, all threads) against one process with all threads
   (``predict_many`` without a scheduler, the model loaded once), on started clusters whose
   workers are warmed up (start-up and warm-up printed beside), in ``--repeat`` interleaved
   rounds (medians and spread);
2. one ``--big``² raster as blocks through ``local:2``: time, Mpx/s, and the peak RSS of each
   worker process (against the peak RSS of the in-process run with ``--big-baseline``);
3. the object-storage round trip: a ``--size``² COG read from and written back to an S3-compatible
   server on 127.0.0.1 (moto, a child process), against the same run on local disk.

Usage: python benchmarks/bench_distributed.py [--count 8] [--size 2048] [--repeat 3] [--big 16384]
       [--block-size 4096] [--big-baseline] [--skip-many] [--skip-s3] [--skip-big]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import make_raster, spread

from geoseg.distributed import predict_many
from geoseg.distributed.cluster import open_client, parse_scheduler
from geoseg.inference import PredictOptions
from geoseg.io.windows import plan_tiles


def peak_rss_mb() -> float:
    """Peak RSS of this process's own memory map (VmHWM: unlike getrusage's maxrss, a spawned
    worker does not inherit its parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def warm_up(src: str, threads: int | None = None) -> float:
    """What a process's first task pays once, paid here: import geoseg and torch, load the bundled
    model (the one ``predict_many`` shares between a worker's tasks) and its frozen trace, and run
    one raster with the task's torch threads. Returns the seconds."""
    from geoseg.distributed.worker import task_environment
    from geoseg.inference import predict_raster
    from geoseg.models.resolve import shared_model

    start = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="geoseg-warm-")) / "warm.tif"
    with task_environment(threads):
        predict_raster(src, out, shared_model(None))
    shutil.rmtree(out.parent, ignore_errors=True)
    return time.perf_counter() - start


def warm_workers(client: Any, src: str, threads: int) -> float:
    """:func:`warm_up` as a task on each worker, run where the runs will be (a worker's task
    thread; a warm-up through ``client.run`` left the first timed tasks slow). Returns the
    slowest one's seconds."""
    futures = [
        client.submit(warm_up, src, threads, workers=[w], pure=False, allow_other_workers=False)
        for w in client.scheduler_info()["workers"]
    ]
    return max(f.result() for f in futures)


def many_rasters(root: Path, count: int, size: int, opts: PredictOptions, repeat: int) -> None:
    """In-process, ``local:2`` and ``local:1`` in turn, ``repeat`` rounds: medians and spread (a
    shared 2-core machine's speed drifts by 1.5x within minutes, so single runs mislead). Each
    cluster is started, and its workers warmed up (torch imported, model loaded) before the runs
    are timed; the in-process baseline is warmed up once the same way."""
    folder = root / "many"
    folder.mkdir()
    for i in range(count):
        make_raster(folder / f"r{i}.tif", size, seed=i)
    small = str(make_raster(root / "small.tif", 512, seed=99))
    mpx = count * size * size / 1e6
    print(f"\n## {count} rasters of {size}² ({mpx:.0f} Mpx), bundled model, one task per raster")
    names = ("in-process", "local:2", "local:1")
    walls: dict[str, list[float]] = {n: [] for n in names}
    starts: dict[str, list[float]] = {n: [] for n in names[1:]}
    warms: dict[str, list[float]] = {n: [] for n in names[1:]}
    warm_up(small)
    precision = ""
    for r in range(repeat):
        wall, res = timed(predict_many, [str(folder)], root / f"out0-{r}", None, opts)
        walls["in-process"].append(wall)
        precision = res.done[0].precision
        for scheduler in names[1:]:
            begin = time.perf_counter()
            with open_client(scheduler) as (client, spec):
                client.wait_for_workers(spec.workers)
                started = time.perf_counter()
                warms[scheduler].append(warm_workers(client, small, spec.threads))
                wall, res = timed(
                    predict_many,
                    [str(folder)],
                    root / f"out-{scheduler[-1]}-{r}",
                    None,
                    opts,
                    scheduler=client,
                    blocks=False,
                )
                walls[scheduler].append(wall)
                ended = time.perf_counter()
            starts[scheduler].append(started - begin + time.perf_counter() - ended)
    base = statistics.median(walls["in-process"])
    print(
        f"in-process, {torch.get_num_threads()} threads: {spread(walls['in-process'], '{:.1f}')} s "
        f"({mpx / base:.2f} Mpx/s), precision {precision}; medians (min..max) of {repeat} rounds"
    )
    for scheduler in names[1:]:
        spec = parse_scheduler(scheduler)
        wall = statistics.median(walls[scheduler])
        print(
            f"{scheduler} ({spec.workers} worker(s) x {spec.threads} torch thread(s)): "
            f"{spread(walls[scheduler], '{:.1f}')} s ({mpx / wall:.2f} Mpx/s); / in-process = "
            f"**{wall / base:.3f}**; besides: cluster start+stop "
            f"{spread(starts[scheduler], '{:.1f}')} s, worker warm-up "
            f"{spread(warms[scheduler], '{:.1f}')} s"
        )


def one_big_raster(root: Path, size: int, opts: PredictOptions, baseline: bool, block: int) -> None:
    src = make_raster(root / "big.tif", size, seed=7)
    mpx = size * size / 1e6
    print(f"\n## one {size}² raster ({mpx:.0f} Mpx) as {block}² blocks")
    with open_client("local:2") as (client, _):
        wall, res = timed(
            predict_many,
            [src],
            root / "big-out",
            None,
            opts,
            scheduler=client,
            blocks=True,
            block_size=block,
        )
        rss = client.run(peak_rss_mb)
        warm, _ = timed(
            predict_many,
            [src],
            root / "big-out-warm",
            None,
            opts,
            scheduler=client,
            blocks=True,
            block_size=block,
        )
    print(f"local:2 again on the same (warm) workers: {warm:.1f} s ({mpx / warm:.2f} Mpx/s)")
    print(
        f"local:2: {wall:.1f} s ({mpx / wall:.2f} Mpx/s), {res.done[0].extra['blocks']} blocks, "
        f"precision {res.done[0].precision}; peak RSS per worker "
        f"{', '.join(f'{v:.0f} MB' for v in rss.values())}; client {peak_rss_mb():.0f} MB; tiles "
        f"run {res.done[0].tiles_run + res.done[0].tiles_skipped} (a whole run: "
        f"{len(plan_tiles(size, size, 512, 32))}: tiles on block edges run for each block)"
    )
    if baseline:
        code = (
            "import time; from geoseg.inference import predict_raster; t = time.perf_counter(); "
            f"predict_raster({str(src)!r}, {str(root / 'big-ref.tif')!r}, None, "
            f"precision={opts.precision!r}); print(time.perf_counter() - t, [int(x.split()[1]) / "
            "1024 for x in open('/proc/self/status') if x.startswith('VmHWM')][0])"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        seconds, peak = float(out[0]), float(out[1])
        print(
            f"in-process: {seconds:.1f} s ({mpx / seconds:.2f} Mpx/s), peak RSS {peak:.0f} MB; "
            f"local:2 / in-process time {wall / seconds:.3f}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def s3_round_trip(root: Path, size: int, opts: PredictOptions) -> None:
    import boto3
    import rasterio.shutil

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        }
        os.environ.update(env)
        from geoseg.io.storage import gdal_options

        os.environ.update(gdal_options())
        s3 = boto3.client("s3")
        for _ in range(50):
            try:
                s3.create_bucket(Bucket="bench")
                break
            except Exception:
                time.sleep(0.2)
        cog = root / "s3in" / "scene.tif"
        cog.parent.mkdir()
        rasterio.shutil.copy(
            make_raster(root / "plain.tif", size, seed=3), cog, driver="COG", compress="deflate"
        )
        s3.upload_file(str(cog), "bench", "in/scene.tif")
        local, _ = timed(predict_many, [cog], root / "s3-local-out", None, opts, vector=".gpkg")
        remote, _ = timed(
            predict_many, ["s3://bench/in/scene.tif"], "s3://bench/out/", None, opts, vector=".gpkg"
        )
        print(f"\n## object storage, one {size}² COG in, mask and polygons out (local S3 server)")
        print(f"local disk {local:.1f} s; s3:// {remote:.1f} s; s3 / local = {remote / local:.3f}")
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--big", type=int, default=16384)
    parser.add_argument(
        "--block-size", type=int, default=4096, help="block edge for the big raster"
    )
    parser.add_argument(
        "--big-baseline", action="store_true", help="also run the big raster in one process"
    )
    parser.add_argument("--skip-many", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the many-raster runs")
    args = parser.parse_args()
    opts = PredictOptions(device="cpu", precision=args.precision)
    root = Path(tempfile.mkdtemp(prefix="geoseg-bench-dist-"))
    print(
        f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads in "
        "this process"
    )
    try:
        if not args.skip_many:
            many_rasters(root, args.count, args.size, opts, args.repeat)
        if not args.skip_s3:
            s3_round_trip(root, args.size, opts)
        if not args.skip_big:
            one_big_raster(root, args.big, opts, args.big_baseline, args.block_size)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
