"""What C libraries print: GDAL, libtiff and PROJ write some messages straight to file descriptor
2 (``_tiffWriteProc: No space left on device.``, ``ERROR 1: TIFFAppendToStrip...``), past Python's
``sys.stderr``. A refusal must be one line, so while a command runs those writes go to a buffer;
Python's own ``sys.stderr`` (messages, warnings, progress bars, logging) keeps the terminal.

Afterwards the command decides: a geoseg error already says what happened in one line, so the
buffer is dropped; an unexpected error shows it (it may be the only clue); a success replays it
unless ``-q``. With ``-v`` nothing is captured.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import IO

__all__ = ["NativeOutput", "captured_native_stderr"]

_terminal: IO[str] | None = None  # a stream on a duplicate of the real fd 2, kept for the process
MAX_KEPT = 1 << 20  # bytes of native output kept for replay; the rest is cut


class NativeOutput:
    """The text C libraries wrote to fd 2 while a command ran (filled when the block ends)."""

    def __init__(self) -> None:
        self.text = ""

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]


def _buffer() -> int:
    """A file descriptor for the captured bytes: in memory where the system allows (a full disk
    is a reason to capture), else an unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        with contextlib.suppress(OSError):
            return os.memfd_create("geoseg-native-stderr")
    fd, name = tempfile.mkstemp(prefix="geoseg-native-")
    os.unlink(name)
    return fd


def _terminal_stream(like: IO[str]) -> IO[str]:
    """A text stream on a duplicate of fd 2 as it is now (the terminal), made once per process:
    logging handlers created during a command may keep it after the command ends."""
    global _terminal
    if _terminal is None:
        raw = os.fdopen(os.dup(2), "wb", buffering=0)
        _terminal = io.TextIOWrapper(
            raw,
            encoding=getattr(like, "encoding", None) or "utf-8",
            errors="backslashreplace",
            line_buffering=True,
        )
    return _terminal


def _is_fd2(stream: object) -> bool:
    try:
        return stream is not None and stream.fileno() == 2  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


@contextlib.contextmanager
def captured_native_stderr(enabled: bool = True) -> Iterator[NativeOutput]:
    """Send fd 2 to a buffer for the block; ``sys.stderr`` keeps writing to the terminal.

    Yields a :class:`NativeOutput` whose ``text`` holds the captured output once the block ends.
    """
    out = NativeOutput()
    if not enabled:
        yield out
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 at all (a detached process)
        yield out
        return
    swapped = None
    if _is_fd2(sys.stderr):
        swapped, sys.stderr = sys.stderr, _terminal_stream(sys.stderr)
    buffer = _buffer()
    os.dup2(buffer, 2)
    try:
        yield out
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if swapped is not None:
            sys.stderr = swapped
        size = os.lseek(buffer, 0, os.SEEK_END)
        os.lseek(buffer, max(0, size - MAX_KEPT), os.SEEK_SET)
        with os.fdopen(buffer, "rb") as f:
            out.text = f.read().decode("utf-8", errors="replace")
