"""``python -m geoseg`` (and the ``geoseg`` command) runs the command line.

SIGTERM is turned into an interrupt here, before anything else is imported, so that ``kill`` at
any moment of a run cleans up as Ctrl-C does: temporary files removed, nothing half-written,
exit status 130.
"""

from __future__ import annotations

import signal
from typing import Any


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("terminated")


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    import atexit

    atexit.register(_ignore_signals)  # registered first, so it runs after every other one
    try:
        from geoseg.cli import main as run
    except KeyboardInterrupt:  # before the command started: nothing was written
        import sys

        sys.stderr.write("Interrupted: before the command started; nothing was written\n")
        sys.exit(130)
    try:
        run()
    except SystemExit as exc:
        if exc.code == 130:
            _end_interrupted()
        raise
    finally:
        _quiet_end()


def _end_interrupted() -> None:
    """An interrupted command has cleaned up and said so: end the process here with 130. Left to
    the interpreter's own exit, a KeyboardInterrupt that once passed through a C extension's call
    back into Python (and was caught by the command) still makes it end by killing itself with
    SIGINT, which whoever waits for the process reads as a crash."""
    import logging

    _quiet_end()
    _run_cleanups()
    logging.shutdown()
    _exit_now(130)


def _run_cleanups() -> None:
    """Run the pending ``weakref.finalize`` cleanups that remove files: geoseg's own (the app's
    work folders) and the standard library's temporary folders. The interpreter's other exit
    handlers are skipped on purpose: they unregister torch operators and free native state while
    a worker thread of the interrupted command may still be inside one of them (a crash, not an
    exit status)."""
    import contextlib
    import weakref

    pending = getattr(weakref.finalize, "_registry", {})
    for finalizer in sorted(pending, key=lambda f: -pending[f].index):  # newest first, as at exit
        alive = finalizer.peek()
        if alive is None:
            continue
        module = getattr(alive[1], "__module__", "") or ""
        if module.split(".")[0] in {"geoseg", "tempfile", "shutil"}:
            with contextlib.suppress(Exception):  # a cleanup that fails leaves its folder
                finalizer()


def _quiet_end() -> None:
    """The command is over, its outputs published or removed: a signal from now on (while the
    interpreter shuts down) ends the process at once with 130. Python would otherwise raise
    KeyboardInterrupt where nothing catches it, and end by killing itself with SIGINT."""

    def end(signum: int, frame: Any) -> None:
        _exit_now(130)

    signal.signal(signal.SIGINT, end)
    signal.signal(signal.SIGTERM, end)


def _exit_now(status: int) -> None:
    """Flush what was printed and end the process with ``status``, skipping the interpreter's
    teardown."""
    import contextlib
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed stream has nothing to flush
            stream.flush()
    os._exit(status)


def _ignore_signals() -> None:
    """The last exit handler: the interpreter now tears itself down, and it puts the system's
    default action back for every signal that has a Python handler, so a SIGTERM or Ctrl-C from
    here on would kill a process whose work is done. Ignored instead, the process ends with its
    command's status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    main()
