"""A loopback HTTP server that honours Range requests, as object stores serving COGs do."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

__all__ = ["serve_directory"]


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with ``Accept-Ranges: bytes`` and 206 partial responses; answers the paths of
    ``redirects`` with a 302 to their target, and appends ``METHOD path`` of every request to
    ``requests_log`` when given."""

    redirects: ClassVar[dict[str, str]] = {}
    requests_log: ClassVar[str | None] = None

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        if self.requests_log:
            with open(self.requests_log, "a") as log:
                log.write(f"{self.command} {self.path}\n")
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return None
        size = path.stat().st_size
        match = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        f = path.open("rb")
        if match:
            start = int(match.group(1) or 0)
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            f.seek(start)
            length = end - start + 1
            self._remaining = length
        else:
            self.send_response(200)
            length = size
            self._remaining = size
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        return f

    def copyfile(self, source, outputfile):  # type: ignore[no-untyped-def]
        remaining = self._remaining
        while remaining > 0:
            chunk = source.read(min(65536, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)


@contextlib.contextmanager
def serve_directory(
    root: Path,
    *,
    host: str = "127.0.0.1",
    redirects: dict[str, str] | None = None,
    requests_log: Path | None = None,
) -> Iterator[str]:
    """Serve ``root`` on ``host`` (a free port) from a child process; yields the base URL.

    A child process, not a thread: GDAL holds the GIL while it opens a file, which would starve a
    server thread in this process.

    Args:
        root: the folder served.
        host: a loopback address to listen on (127.0.0.2 is a second host on Linux).
        redirects: request path -> URL it is redirected to (302).
        requests_log: file that gets ``METHOD path`` of every request, one a line.
    """
    config = {"redirects": redirects or {}, "requests_log": str(requests_log or "")}
    proc = subprocess.Popen(
        [sys.executable, "-u", __file__, str(root), host, json.dumps(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())
        yield f"http://{host}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    settings = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    RangeHandler.redirects = settings.get("redirects", {})
    RangeHandler.requests_log = settings.get("requests_log") or None
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = ThreadingHTTPServer((host, 0), partial(RangeHandler, directory=sys.argv[1]))
    print(server.server_address[1], flush=True)
    server.serve_forever()
