"""Atomic outputs: every file geoseg writes appears complete under its final name, or not at all.

:func:`atomic_output` hands out a temporary path that is unique to this run (process id plus a
random token) in the destination's own folder, so the final :func:`os.replace` is an atomic rename
on one file system. On a clean exit the file is checked (an optional ``verify`` callable), flushed
to disk with ``fsync`` and renamed; on any exception, ``KeyboardInterrupt`` included, it is
removed. Temporary files left by a run that was killed outright (SIGKILL, power loss) are
recognised by their dead process id and removed by the next run that writes the same name.

:func:`check_paths` refuses a run whose outputs name one of its inputs or each other, compared
by resolved path and by device/inode (hard links, ``./dir/../x``), whatever ``overwrite`` says.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from geoseg.errors import OutputCollisionError, OutputExistsError, WriteError

__all__ = [
    "PublishGroup",
    "atomic_output",
    "check_destination",
    "check_paths",
    "claim_folder",
    "describe_os_error",
    "pending_path",
    "publish_together",
    "temporary_name",
]

log = logging.getLogger(__name__)

_MARK = ".geoseg-"  # temporary names: .<name>.geoseg-<pid>-<token>.partial<suffix>
FULL_BELOW = 1 << 20  # bytes free under which a failed write is blamed on a full disk
NAME_MAX = 255  # bytes in one path component on the file systems geoseg writes to
# packages whose errors while writing are explained like OSErrors (disk full, permission...)
IO_LIBRARIES = frozenset({"pyogrio", "pyarrow", "sqlite3", "rasterio", "onnx", "PIL"})


def temporary_name(dst: Path, tag: str = "") -> Path:
    """A fresh temporary sibling of ``dst``: hidden, unique to this process and call, same suffix.

    The suffix is kept last, because some writers pick the format from it (PNG, GeoJSON...).
    """
    token = f"{os.getpid()}-{secrets.token_hex(4)}{tag}"
    name = f".{dst.name}{_MARK}{token}.partial{dst.suffix}"
    if len(os.fsencode(name)) > NAME_MAX:  # a long final name: shorten the stem, keep it unique
        name = f".{_MARK[1:]}{token}.partial{dst.suffix}"
    return dst.with_name(name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(dst: Path) -> None:
    """Remove temporary siblings of ``dst`` left by runs that died (their process is gone)."""
    prefix = f".{dst.name}{_MARK}"
    with contextlib.suppress(OSError):
        for p in dst.parent.iterdir():
            if not p.name.startswith(prefix):
                continue
            pid = p.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                _remove(p)
                log.debug("removed %s, left by a run that was killed", p)


def describe_os_error(dst: str | os.PathLike[str], exc: BaseException) -> str | None:
    """A one-line explanation (expected / got / fix) of an OSError, or an I/O library's error,
    met while writing ``dst``; None when it is not one of the write failures geoseg explains."""
    path = Path(dst)
    code = getattr(exc, "errno", None)
    text = " ".join(
        str(e) for e in _chain(exc)
    )  # GDAL's reason hides in the cause ("see previous exception")
    # GDAL's drivers seldom say why a write failed ("sqlite3_exec(ROLLBACK) failed", "Cannot
    # write feature"): a failure of an I/O library with no space left is blamed on the disk
    vague = not isinstance(exc, OSError) or "write" in text.lower()
    if (
        code in (errno.ENOSPC, errno.EDQUOT)
        or "No space left" in text
        or "Disk quota" in text
        or (vague and _nearly_full(path.parent))
    ):
        return _disk_full(path)
    if code == errno.EFBIG or "File too large" in text:
        return (
            f"{path}: the file system refuses a file this large; write to a disk without a "
            "size limit (not FAT32)"
        )
    if code == errno.EROFS or "Read-only file system" in text:
        return (
            f"{path}: the folder {path.parent} is on a read-only file system; write the "
            "output elsewhere"
        )
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return (
            f"{path}: no permission to write in {path.parent}; write the output to a folder you own"
        )
    if code == errno.ENAMETOOLONG or "name too long" in text:
        return (
            f"{path}: the file name is too long for the file system "
            f"({len(os.fsencode(path.name))} bytes); choose a shorter name"
        )
    if code == errno.ENOENT:
        return (
            f"{path}: the folder {path.parent} does not exist (or vanished while writing); "
            "create it first"
        )
    return None


def _disk_full(path: Path) -> str:
    return (
        f"{path}: the disk is full (no space left in {path.parent}); nothing was written under "
        "that name. Free some space or write the output to another disk"
    )


def _nearly_full(folder: Path) -> bool:
    """Whether ``folder``'s file system has (almost) no space left: GDAL's write errors often
    say only "write failed", and the real reason went to stderr."""
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW
    except OSError:
        return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened and synced
        _fsync(folder)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(
    dst: str | os.PathLike[str],
    *,
    verify: Callable[[Path], None] | None = None,
    tag: str = "",
) -> Iterator[Path]:
    """Write ``dst`` under a unique temporary name; publish it by atomic rename on success.

    Usage::

        with atomic_output("mask.tif", verify=check_cog) as tmp:
            write_something(tmp)          # may raise: tmp is removed, mask.tif is untouched

    On a clean exit the temporary file is verified (``verify(tmp)`` raises when it is unusable),
    flushed to disk and renamed onto ``dst``. On any exception, ``KeyboardInterrupt`` included,
    it is removed and the exception goes on. OSErrors of writing (disk full, read-only folder,
    permission, name too long) come out as one-line :class:`WriteError`.

    Args:
        dst: the final path. Its folder must exist; checking ``overwrite`` is the caller's job
            (:func:`~geoseg.io.writer.check_destination`).
        verify: called with the finished temporary path before the rename.
        tag: text added to the temporary name (several temporaries of one output).

    Yields:
        The temporary path to write (a sibling of ``dst``; nothing exists there yet).

    Raises:
        WriteError: the output could not be written, verified or renamed; nothing was left
            under ``dst`` and the temporary file is gone.
    """
    path = Path(dst)
    remove_stale(path)
    tmp = temporary_name(path, tag)
    try:
        yield tmp
        if not tmp.exists():
            raise WriteError(
                f"{path}: the writer produced no file; nothing was written under that name"
            )
        if verify is not None:
            try:
                verify(tmp)
            except WriteError:
                # a file the disk cut short reads back broken: blame the disk when it is full
                if _nearly_full(path.parent):
                    raise WriteError(_disk_full(path)) from None
                raise
        if tmp.is_file():
            _fsync(tmp)
        group = _GROUP.get()
        if group is not None:
            group.defer(tmp, path)  # renamed with the run's other outputs
        else:
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    except BaseException as exc:
        message = None
        package = type(exc).__module__.split(".")[0]
        if package != "geoseg" and (isinstance(exc, OSError) or package in IO_LIBRARIES):
            message = describe_os_error(path, exc)  # before the removal frees the space
        _remove(tmp)
        if message is not None:
            raise WriteError(message) from None
        raise


class PublishGroup:
    """The outputs of one run, published together: each finished output waits under its
    temporary name, and all are renamed onto their final names in one step at the end, with
    SIGINT and SIGTERM held until the last rename (a signal then ends the run, its outputs all
    there). On an error nothing is published and every temporary file is removed."""

    def __init__(self) -> None:
        self._items: dict[Path, Path] = {}  # final path -> finished temporary file

    def defer(self, tmp: Path, dst: Path) -> None:
        """Hold the finished ``tmp`` until the group publishes it as ``dst``."""
        old = self._items.pop(dst, None)
        if old is not None:
            _remove(old)
        self._items[dst] = tmp

    def pending(self, dst: str | os.PathLike[str]) -> Path | None:
        """Where the finished output ``dst`` waits, or None when the group holds no such output."""
        return self._items.get(Path(dst))

    def publish(self) -> None:
        """Rename every held output onto its final name (signals held until the last)."""
        folders = {dst.parent for dst in self._items}
        try:
            with _signals_held():
                for dst, tmp in list(self._items.items()):
                    os.replace(tmp, dst)
                    del self._items[dst]
        finally:
            self.discard()  # what a failed rename left behind
        for folder in folders:
            _fsync_dir(folder)

    def discard(self) -> None:
        """Remove every held output (the run failed: none is published)."""
        for tmp in self._items.values():
            _remove(tmp)
        self._items.clear()


_GROUP: contextvars.ContextVar[PublishGroup | None] = contextvars.ContextVar(
    "geoseg_publish_group", default=None
)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (in the main thread) until the block ends, then take effect."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.getsignal(s) for s in held}
    for s in held:
        signal.signal(s, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for number in caught[:1]:
            signal.raise_signal(number)


@contextlib.contextmanager
def publish_together() -> Iterator[PublishGroup]:
    """Publish every :func:`atomic_output` written inside the block (in this thread) together at
    its end, or none of them when it fails: the outputs of one run appear together or not at
    all. A block inside another joins the outer one.

    Usage::

        with publish_together():
            predict_raster(src, "mask.tif", confidence="conf.tif")
            vectorize_raster(pending_path("mask.tif"), "mask.gpkg")   # reads the held mask
    """
    outer = _GROUP.get()
    if outer is not None:
        yield outer
        return
    group = PublishGroup()
    token = _GROUP.set(group)
    try:
        yield group
    except BaseException:
        group.discard()
        raise
    finally:
        _GROUP.reset(token)
    group.publish()


def pending_path(dst: str | os.PathLike[str]) -> Path:
    """The file that holds the output ``dst`` now: its temporary file while a
    :func:`publish_together` block holds it, else ``dst`` itself."""
    group = _GROUP.get()
    held = group.pending(dst) if group is not None else None
    return held if held is not None else Path(dst)


def check_destination(dst: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse an existing destination unless ``overwrite``; the folder must exist.

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is False.
        WriteError: the destination folder is missing or is not a folder.
    """
    path = Path(dst)
    if len(os.fsencode(path.name)) > 255:
        raise WriteError(
            f"{path.name[:40]}...: the file name is too long ({len(os.fsencode(path.name))} bytes, "
            "at most 255); choose a shorter name"
        )
    if path.is_dir():
        raise WriteError(
            f"{path}: is a directory; expected an output file name such as {path / 'mask.tif'}"
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path}: already exists; pass --overwrite (overwrite=True) to replace it, or choose "
            "another name"
        )
    if not path.parent.exists():
        raise WriteError(
            f"{path}: folder {path.parent} does not exist; create it first (mkdir -p {path.parent})"
        )
    _check_writable(path)
    return path


def _check_writable(path: Path) -> None:
    """Refuse a read-only or forbidden folder before any work is done."""
    folder = path.parent
    read_only = False
    with contextlib.suppress(OSError, AttributeError):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    if read_only:
        raise WriteError(
            f"{path}: the folder {folder} is on a read-only file system; write the output elsewhere"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(
            f"{path}: no permission to write in {folder}; write the output to a folder you own"
        )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_paths(
    inputs: Mapping[str, str | os.PathLike[str] | None],
    outputs: Mapping[str, str | os.PathLike[str] | None],
) -> None:
    """Refuse a run whose outputs name one of its inputs, or name each other.

    Paths are compared resolved (``./dir/../x.tif``, symlinks) and, when they exist, by device
    and inode (hard links). URLs among the inputs are skipped. ``overwrite`` plays no part: an
    input is never replaced, and two outputs of one run never share a file.

    Args:
        inputs: role -> path (``{"SRC": "scene.tif"}``); ``None`` entries are ignored.
        outputs: role -> path (``{"DST": "mask.tif", "--vector": "mask.gpkg"}``).

    Raises:
        OutputCollisionError: naming both roles and what to do.
    """

    def keyed(
        items: Iterable[tuple[str, str | os.PathLike[str] | None]],
    ) -> list[tuple[str, str, Path, tuple[int, int] | None]]:
        out = []
        for role, p in items:
            if p is None or "://" in str(p) or str(p).startswith("/vsi"):
                continue
            resolved = Path(p).expanduser().resolve()
            out.append((role, str(p), resolved, _identity(resolved)))
        return out

    def same(
        a: tuple[str, str, Path, tuple[int, int] | None],
        b: tuple[str, str, Path, tuple[int, int] | None],
    ) -> bool:
        return a[2] == b[2] or (a[3] is not None and a[3] == b[3])

    ins, outs = keyed(inputs.items()), keyed(outputs.items())
    for o in outs:
        for i in ins:
            if same(o, i):
                raise OutputCollisionError(
                    f"{o[1]}: the output {o[0]} is the input {i[0]} ({i[1]}); geoseg never writes "
                    "over an input, even with --overwrite. Choose another output name"
                )
    for k, a in enumerate(outs):
        for b in outs[k + 1 :]:
            if same(a, b):
                raise OutputCollisionError(
                    f"{a[1]}: the outputs {a[0]} and {b[0]} name the same file ({b[1]}); one would "
                    "destroy the other. Give each output its own name"
                )


def check_run_folder(
    folder: str | os.PathLike[str], inputs: Mapping[str, str | os.PathLike[str] | None]
) -> None:
    """Refuse an output folder that is, or contains, one of the inputs (``--overwrite`` would delete
    it).

    Raises:
        OutputCollisionError: naming the input and what to do.
    """
    run = Path(folder).expanduser().resolve()
    for role, p in inputs.items():
        if p is None or "://" in str(p):
            continue
        resolved = Path(p).expanduser().resolve()
        if resolved == run or run in resolved.parents:
            raise OutputCollisionError(
                f"{folder}: the output folder holds the input {role} ({p}); geoseg never deletes "
                "or writes over its inputs, even with --overwrite. Choose an output folder "
                "outside the data"
            )


@contextlib.contextmanager
def claim_folder(folder: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold ``folder`` for this process while a run writes into it: a second run into the same
    folder at the same time is refused in one line instead of mixing its files with ours. The
    claim is a lock on the folder itself (made if missing), so it adds no file to it; the
    operating system releases it when the process ends, however it ends, even by ``kill -9``.

    Raises:
        OutputExistsError: another process holds the folder.
    """
    import fcntl

    run = Path(folder)
    while True:
        run.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # the holder removed it between our mkdir and our open: again
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputExistsError(
                f"{run}: another geoseg {command} is writing this folder now; wait for it to "
                "finish or choose another output folder"
            ) from None
        except OSError as e:  # a file system without locks on folders (some network mounts)
            log.debug(
                "%s: cannot lock the folder (%s); a second run into it is not refused", run, e
            )
            break
        try:
            now, held = os.stat(run), os.fstat(fd)
            same = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the folder between our open and our lock: again
    try:
        yield
    finally:
        os.close(fd)
