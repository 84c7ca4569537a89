"""Per-request folders and the checks an input passes before it reaches the model.

Each request gets its own folder (a random name under one private root) holding a copy of the
upload under a fixed name and the results; folders are removed a while after they were made.
Uploaded file names are only ever shown, never used as paths.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from geoseg.errors import UploadError

__all__ = [
    "ACCEPTED_DRIVERS",
    "Workspace",
    "check_raster_kind",
    "check_url",
    "display_name",
    "stage_upload",
]

log = logging.getLogger(__name__)

# what the app reads: GeoTIFF/COG, JPEG and PNG; formats that can point at other files
# (VRT and the like) are refused, so an upload cannot make the server read its own files
ACCEPTED_DRIVERS = {"GTiff": "GeoTIFF", "COG": "COG", "JPEG": "JPEG", "PNG": "PNG"}
_SUFFIXES = {".tif": ".tif", ".tiff": ".tif", ".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png"}


def display_name(name: str | os.PathLike[str] | None, fallback: str = "upload") -> str:
    """The last component of ``name`` with anything but letters, digits, ``._-`` replaced: for
    messages only."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:120]
    return clean or fallback


class Workspace:
    """A private root of per-request folders, each removed ``keep_seconds`` after it was made.

    Args:
        keep_seconds: how long a request's folder lives.
        root: parent folder (``None``: a new folder in the system temp folder).
    """

    def __init__(self, keep_seconds: float = 3600.0, root: Path | None = None) -> None:
        self.keep_seconds = keep_seconds
        self.root = Path(tempfile.mkdtemp(prefix="geoseg-app-", dir=root))
        os.chmod(self.root, 0o700)
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def new_request(self) -> Path:
        """A new, empty folder with an unguessable name."""
        folder = self.root / uuid.uuid4().hex
        folder.mkdir(mode=0o700)
        return folder

    def sweep(self, now: float | None = None) -> int:
        """Remove request folders older than ``keep_seconds``; returns how many went."""
        now = time.time() if now is None else now
        removed = 0
        for folder in self.root.iterdir():
            try:
                if now - folder.stat().st_mtime >= self.keep_seconds:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def start_sweeper(self, every: float | None = None) -> None:
        """Sweep in a daemon thread every ``every`` seconds (default: a tenth of ``keep_seconds``, 5
        s to 5 min)."""
        if self._sweeper is not None:
            return
        period = every if every is not None else min(max(self.keep_seconds / 10, 5.0), 300.0)

        def loop() -> None:
            while not self._stop.wait(period):
                try:
                    self.sweep()
                except OSError as exc:  # keep sweeping: one unreadable folder must not stop it
                    log.warning("cleaning %s: %s", self.root, exc)

        self._sweeper = threading.Thread(target=loop, name="geoseg-app-sweeper", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        """Stop sweeping and remove every request folder."""
        self._stop.set()
        shutil.rmtree(self.root, ignore_errors=True)


def stage_upload(
    upload: str | os.PathLike[str], folder: Path, *, max_bytes: int, name: str | None = None
) -> Path:
    """Put an uploaded file into ``folder`` under a fixed name, after checking its size.

    Args:
        upload: where the web framework stored the upload.
        folder: the request's folder.
        max_bytes: the upload limit.
        name: the name the user gave the file (shown in messages only).

    Returns:
        ``folder / "input.<ext>"`` (the extension from a short list, else ``.dat``).

    Raises:
        UploadError: the file is missing or over the limit.
    """
    src = Path(upload)
    shown = display_name(name or src.name)
    try:
        size = src.stat().st_size
    except OSError:
        raise UploadError(
            f"{shown}: expected an uploaded file, found nothing; upload it again"
        ) from None
    if size > max_bytes:
        raise UploadError(
            f"{shown}: {size / 1e6:.1f} MB is over this server's upload limit of "
            f"{max_bytes / 1e6:g} MB; crop or compress it (e.g. gdal_translate -srcwin), or pass a "
            "COG URL instead"
        )
    dst = folder / ("input" + _SUFFIXES.get(Path(shown).suffix.lower(), ".dat"))
    try:
        os.link(src, dst)  # same file system: no copy
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def check_url(url: str, *, allowed: bool = True) -> str:
    """An ``http(s)://`` URL with a host, stripped of spaces.

    Raises:
        UploadError: another scheme, no host, or URLs are switched off.
    """
    text = url.strip()
    if not allowed:
        raise UploadError(
            "this server does not read URLs; expected an uploaded file. Download the COG and "
            "upload it"
        )
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        shown = text if len(text) <= 100 else text[:100] + "..."
        raise UploadError(
            f"expected an http:// or https:// URL of a COG, got {shown!r}; paste the full URL"
        )
    return text


def check_raster_kind(path: str | os.PathLike[str], shown: str) -> str:
    """Open ``path`` as the CLI does and accept only GeoTIFF/COG, JPEG and PNG; returns the driver.

    Raises:
        RasterOpenError: not a raster, or unreadable (the CLI's message, naming ``shown``).
        UploadError: a raster of another format.
    """
    from geoseg.errors import RasterOpenError
    from geoseg.io.open import open_raster

    try:
        with open_raster(path) as ds:
            driver = ds.driver
    except RasterOpenError as exc:
        raise RasterOpenError(str(exc).replace(str(path), shown)) from None
    if driver not in ACCEPTED_DRIVERS:
        raise UploadError(
            f"{shown}: expected a GeoTIFF/COG, JPEG or PNG image, found a {driver} file; "
            "convert it with gdal_translate -of COG"
        )
    return driver
