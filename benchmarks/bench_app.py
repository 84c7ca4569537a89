"""Benchmark the web app on the sample scene against the library in a warm process.

Starts ``geoseg app`` in a subprocess (bundled model, two predictions at a time) and, in this
process, times the same work through the library with the model already loaded:

* ``predict_raster`` alone, and ``predict_raster`` + quicklook + GeoPackage (what
  ``geoseg predict --vector --quicklook`` does), medians over ``--repeat`` runs after one warm-up;
* the app through ``gradio_client``: the first request after the server listens (first-request
  latency, cold start included), then the median of ``--repeat`` more (upload, prediction,
  polygons, views and the downloads of every output included);
* the server's peak resident memory while two clients send the scene at the same time.

The three warm measurements are interleaved. Prints the ratios app ÷ library of this run. Usage:
python benchmarks/bench_app.py [--repeat 3] [--scene sample_data/rotterdam_ps_rgb.tif]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeakRSS:
    """Samples the resident memory of a process tree every 50 ms; ``peak`` in MB."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs) / 1e6)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self.peak = 0.0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Library:
    """The same work through the library in this process, the model loaded once and warmed up."""

    def __init__(self, scene: Path, tmp: Path) -> None:
        from geoseg.models import load_checkpoint
        from geoseg.models.default import default_model

        self.scene, self.tmp, self.k = scene, tmp, 0
        self.loaded = load_checkpoint(default_model())
        self.full()  # warm-up: traces, numba compilation

    def predict(self) -> float:
        """Seconds of predict_raster alone."""
        from geoseg.inference import predict_raster

        self.k += 1
        start = time.perf_counter()
        predict_raster(self.scene, self.tmp / f"p{self.k}.tif", self.loaded)
        return time.perf_counter() - start

    def full(self) -> float:
        """Seconds of predict_raster + quicklook + GeoPackage (geoseg predict --vector
        --quicklook)."""
        from geoseg.inference import predict_raster
        from geoseg.io.quicklook import write_quicklook
        from geoseg.vectorize import vectorize_raster

        self.k += 1
        mask = self.tmp / f"f{self.k}.tif"
        start = time.perf_counter()
        predict_raster(self.scene, mask, self.loaded)
        write_quicklook(self.scene, mask, mask.with_suffix(".png"))
        vectorize_raster(mask, mask.with_suffix(".gpkg"))
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scene", type=Path, default=REPO / "sample_data" / "rotterdam_ps_rgb.tif")
    args = ap.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_client import Client, handle_file

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "geoseg", "-q", "app", "--port", str(port), "--concurrency", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("the app did not start") from None
                time.sleep(0.2)
        listening = time.perf_counter() - started
        with tempfile.TemporaryDirectory(prefix="geoseg-bench-app-") as tmp:
            client = Client(url, verbose=False, download_files=tmp)
            model = "dubai-landcover-unet (bundled)"

            def request(c: Client) -> float:
                start = time.perf_counter()
                c.predict(
                    handle_file(str(args.scene)),
                    "",
                    model,
                    None,
                    None,
                    "none",
                    "auto",
                    "",
                    api_name="/segment",
                )
                return time.perf_counter() - start

            first = request(client)
            library = Library(args.scene, Path(tmp))
            runs: dict[str, list[float]] = {"app": [], "alone": [], "full": []}
            for _ in range(args.repeat):  # interleaved, so load from elsewhere hits all three alike
                runs["app"].append(request(client))
                runs["alone"].append(library.predict())
                runs["full"].append(library.full())
            warm, alone, full = (statistics.median(runs[k]) for k in ("app", "alone", "full"))
            idle = PeakRSS(server.pid)
            with idle:
                time.sleep(0.5)
            clients = [Client(url, verbose=False, download_files=tmp) for _ in range(2)]
            both: list[float] = []
            with PeakRSS(server.pid) as two:
                threads = [
                    threading.Thread(target=lambda c=c: both.append(request(c))) for c in clients
                ]
                start = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall_two = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"scene {args.scene.name}, bundled model, precision auto, {os.cpu_count()} CPU(s), "
        f"medians of {args.repeat}"
    )
    print(f"app listening after         {listening:7.2f} s (process start)")
    print(f"first request               {first:7.2f} s (right after the server listens)")
    print(
        f"app, warm request           {warm:7.2f} s (upload, predict, polygons, views, downloads)"
    )
    print(f"predict_raster, warm        {alone:7.2f} s")
    print(f"predict+quicklook+gpkg      {full:7.2f} s (= geoseg predict --vector --quicklook)")
    print(f"ratio app / predict_raster  {warm / alone:7.2f}  (target <= 1.2)")
    print(f"ratio app / predict+vector  {warm / full:7.2f}")
    print(f"two users at once           {wall_two:7.2f} s wall, {max(both):.2f} s slowest")
    print(
        f"server peak RSS             {idle.peak:7.0f} MB idle (model loaded), {two.peak:.0f} MB "
        "with two concurrent users"
    )


if __name__ == "__main__":
    main()
