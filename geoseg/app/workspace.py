"""Per-request folders and the checks an input passes before it reaches the model.

Each request gets its own folder (a random name under one private root, ``geoseg-app-*``) holding
a copy of the upload under a fixed name and the results; folders are removed a while after they
were made, the root when the app stops, and roots left by app processes that ended are removed
when an app starts. Uploaded file names are only ever shown, never used as paths. An input is
opened once (its header) before any tile runs: only plain image formats, and no more pixels than
the server's budget.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path

from geoseg.errors import UploadError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no start-up sweep of other processes' roots
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ACCEPTED_DRIVERS",
    "Workspace",
    "check_raster",
    "display_name",
    "stage_upload",
    "sweep_orphans",
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


LOCK_NAME = ".owner.lock"  # held (flock) by the process that owns a root, for its lifetime
ROOT_PREFIX = "geoseg-app-"
_REQUEST_NAME = re.compile(r"[0-9a-f]{32}")  # uuid4().hex
ORPHAN_GRACE = 60.0  # seconds a root may live without its lock file (the instant it is being made)


def _lock_owner(root: Path) -> int | None:
    """Create and lock ``root``'s lock file; returns its descriptor (None where ``fcntl`` is
    missing)."""
    if fcntl is None:  # pragma: no cover - not POSIX
        return None
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _remove_root(root: Path, fd: int | None) -> None:
    shutil.rmtree(root, ignore_errors=True)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def sweep_orphans(parent: Path | None = None, *, now: float | None = None) -> list[Path]:
    """Remove the ``geoseg-app-*`` roots in ``parent`` that no live process owns.

    A root is owned while its lock file is locked: the lock goes when its process ends, however
    it ends (a crash, ``kill -9``). Roots of other users, links, and roots younger than
    :data:`ORPHAN_GRACE` without a lock file (being made this instant) are left alone.

    Args:
        parent: the folder to look in (default: the system temp folder).
        now: the time to compare ages with (default: now).

    Returns:
        The roots removed.
    """
    if fcntl is None:  # pragma: no cover - not POSIX
        return []
    parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    now = time.time() if now is None else now
    removed = []
    for root in sorted(parent.glob(ROOT_PREFIX + "*")):
        try:
            info = root.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            fd = os.open(root / LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:
            if now - info.st_mtime >= ORPHAN_GRACE:
                shutil.rmtree(root, ignore_errors=True)
                removed.append(root)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live process holds it
            os.close(fd)
            continue
        _remove_root(root, fd)
        removed.append(root)
    if removed:
        log.info("removed %d folder(s) left by app processes that ended: %s", len(removed), removed)
    return removed


class Workspace:
    """A private root of per-request folders, each removed ``keep_seconds`` after it was made.

    The root (``geoseg-app-*``) holds a locked lock file while this process lives, so
    :func:`sweep_orphans` tells it from one left by a process that ended; :meth:`close` removes it,
    and so does the interpreter's exit if nobody called :meth:`close`.

    Args:
        keep_seconds: how long a request's folder lives.
        root: parent folder (``None``: the system temp folder).
    """

    def __init__(self, keep_seconds: float = 3600.0, root: Path | None = None) -> None:
        self.keep_seconds = keep_seconds
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=root))
        os.chmod(self.root, 0o700)
        fd = _lock_owner(self.root)
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._finalizer = weakref.finalize(self, _remove_root, self.root, fd)

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
            if not _REQUEST_NAME.fullmatch(folder.name):  # the lock, Gradio's cache
                continue
            try:
                info = folder.lstat()
                if stat.S_ISDIR(info.st_mode) and now - info.st_mtime >= self.keep_seconds:
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
        """Stop sweeping and remove every request folder, and the root."""
        self._stop.set()
        self._finalizer()


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
            f"{max_bytes / 1e6:g} MB; crop it to the area you need or compress it, or paste the "
            "URL of a COG instead"
        )
    dst = folder / ("input" + _SUFFIXES.get(Path(shown).suffix.lower(), ".dat"))
    try:
        os.link(src, dst)  # same file system: no copy
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:,.0f}" if pixels >= 10_000_000 else f"{pixels / 1e6:.3g}"


def check_raster(
    path: str | os.PathLike[str], shown: str, *, max_pixels: int | None = None
) -> tuple[str, int, int]:
    """Open ``path`` as the CLI does (the header only: cheap even for a huge raster), accept only
    GeoTIFF/COG, JPEG and PNG, and refuse a raster of more than ``max_pixels`` pixels.

    Returns:
        ``(driver, width, height)``.

    Raises:
        RasterOpenError: not a raster, or unreadable (the CLI's message, naming ``shown``).
        UploadError: a raster of another format, or over the pixel budget.
    """
    from geoseg.errors import RasterOpenError
    from geoseg.io.open import open_raster

    try:
        with open_raster(path) as ds:
            driver, width, height = ds.driver, ds.width, ds.height
    except RasterOpenError as exc:
        raise RasterOpenError(str(exc).replace(str(path), shown)) from None
    if driver not in ACCEPTED_DRIVERS:
        raise UploadError(
            f"{shown}: expected a GeoTIFF/COG, JPEG or PNG image, found a {driver} file; "
            "save it as a GeoTIFF (e.g. in QGIS: Export > Save As...) and upload that"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise UploadError(
            f"{shown}: {width} x {height} px ({_megapixels(width * height)} megapixels) is over "
            f"this server's limit of {_megapixels(max_pixels)} megapixels; crop it to the area you "
            "need or reduce its resolution, and upload that"
        )
    return driver, width, height
