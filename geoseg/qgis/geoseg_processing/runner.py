"""Run the geoseg command line for an algorithm: find it, follow its progress, honour cancel.

Which geoseg runs, first found: the provider setting "geoseg executable" (Settings > Options >
Processing > Providers > geoseg), the ``GEOSEG_EXECUTABLE`` environment variable (a command line,
e.g. ``/opt/venv/bin/geoseg`` or ``/opt/venv/bin/python -m geoseg``), the environment
``geoseg qgis-plugin install`` recorded in ``geoseg.json`` beside this file, and ``geoseg`` on
PATH.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

__all__ = ["SETTING", "geoseg_command", "installed_choices", "run_geoseg"]

SETTING = "GEOSEG_EXECUTABLE"  # the provider setting and the environment variable
HERE = Path(__file__).resolve().parent
_PERCENT = re.compile(r"(\d{1,3})%\|")  # a tqdm progress bar: " 42%|████ ..."
_CANCELLED = "Cancelled: geoseg was stopped; it leaves no partial output under the final names"


def _recorded() -> dict[str, Any]:
    """What ``geoseg qgis-plugin install`` wrote beside the plugin (empty when absent)."""
    try:
        data = json.loads((HERE / "geoseg.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@functools.lru_cache(maxsize=1)
def installed_choices() -> dict[str, list[str]]:
    """geoseg's own choice lists (bundled models, TTA, precision, explain methods): those the
    installing geoseg recorded, else those ``geoseg qgis-plugin choices`` prints, else none."""
    choices = _recorded().get("choices")
    if not choices:
        try:
            done = subprocess.run(
                [*geoseg_command(), "qgis-plugin", "choices"],
                capture_output=True,
                timeout=60,
                check=True,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
            choices = json.loads(done.stdout)
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError):
            choices = {}
    return {str(k): [str(v) for v in vs] for k, vs in choices.items()}


def _setting() -> str:
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        value = ProcessingConfig.getSetting(SETTING)
    except Exception:  # the processing plugin is not loaded (e.g. a bare test harness)
        value = None
    return str(value or "").strip()


def geoseg_command() -> list[str]:
    """The command that starts geoseg, as a list of arguments.

    Raises:
        RuntimeError: no geoseg found, with where to name one.
    """
    for text in (_setting(), os.environ.get(SETTING, "").strip()):
        if text:
            return shlex.split(text) if not Path(text).is_file() else [text]
    recorded = _recorded().get("command")
    if recorded and Path(recorded[0]).is_file():
        return [str(part) for part in recorded]
    found = shutil.which("geoseg")
    if found:
        return [found]
    raise RuntimeError(
        "geoseg was not found: expected the geoseg executable of the Python environment where "
        "geoseg is installed; name it in Settings > Options > Processing > Providers > geoseg > "
        "geoseg executable (e.g. /path/to/venv/bin/geoseg), or run `geoseg qgis-plugin install` "
        "from that environment"
    )


def _reader(stream: Any, name: str, out: queue.Queue[tuple[str, str]]) -> None:
    """Split a byte stream into lines on \\n and \\r (progress bars redraw with \\r)."""
    buffer = b""
    for chunk in iter(lambda: stream.read1(4096), b""):
        buffer += chunk
        parts = re.split(rb"[\r\n]", buffer)
        buffer = parts.pop()
        for part in parts:
            out.put((name, part.decode("utf-8", "replace")))
    if buffer:
        out.put((name, buffer.decode("utf-8", "replace")))
    out.put((name, "\0"))


def run_geoseg(args: list[str], feedback: Any, *, step: tuple[float, float] = (0, 100)) -> None:
    """Run ``geoseg ARGS`` and wait, reporting its progress to ``feedback`` (scaled into
    ``step``: the start and end percentage of this run), its summary lines as info and its
    warnings as warnings; stop it when the user cancels.

    Raises:
        QgsProcessingException: geoseg failed (its one-line error) or was cancelled.
    """
    from qgis.core import QgsProcessingException

    try:
        command = geoseg_command()
    except RuntimeError as exc:
        raise QgsProcessingException(str(exc)) from None
    full = [*command, *args]
    feedback.pushCommandInfo(" ".join(shlex.quote(a) for a in full))
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window on Windows
    try:
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            creationflags=flags,
        )
    except OSError as exc:
        raise QgsProcessingException(
            f"cannot start geoseg ({' '.join(command)}): {exc}; name the geoseg executable in "
            "Settings > Options > Processing > Providers > geoseg"
        ) from None
    with proc:
        errors = _follow(proc, feedback, step)
    if feedback.isCanceled():
        raise QgsProcessingException(_CANCELLED)
    if proc.returncode != 0:
        raise QgsProcessingException(
            errors[-1]
            if errors
            else f"geoseg exited with status {proc.returncode}: {' '.join(full)}"
        )
    feedback.setProgress(step[1])


def _follow(proc: subprocess.Popen[bytes], feedback: Any, step: tuple[float, float]) -> list[str]:
    """Report a running geoseg's output until it exits; stop it on cancel. Returns its errors."""
    lines: queue.Queue[tuple[str, str]] = queue.Queue()
    for stream, name in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=_reader, args=(stream, name, lines), daemon=True).start()
    open_streams, errors = 2, []
    lo, hi = step
    while open_streams:
        if feedback.isCanceled() and proc.poll() is None:
            proc.terminate()  # geoseg removes what it had not finished
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            name, line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line == "\0":
            open_streams -= 1
            continue
        text = line.strip()
        percent = _PERCENT.search(text)
        if percent:
            feedback.setProgress(lo + (hi - lo) * min(int(percent.group(1)), 100) / 100)
        elif not text:
            continue
        elif text.startswith("Error:"):
            errors.append(text[len("Error:") :].strip())
        elif text.startswith("Warning:"):
            feedback.pushWarning(text[len("Warning:") :].strip())
        else:
            feedback.pushInfo(text)
    proc.wait()
    return errors
