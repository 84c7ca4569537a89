"""The QGIS Processing provider shipped with geoseg, and the tools that install it.

The plugin itself is the folder :data:`PLUGIN_NAME` beside this file: plain PyQGIS that runs the
``geoseg`` command line, so QGIS's own Python needs neither torch nor geoseg. Installing copies
that folder into a QGIS profile's plugin folder (or into a zip for Plugins > Install from ZIP)
with a ``geoseg.json`` recording which geoseg to run (the Python environment that installed it)
and geoseg's own choice lists (bundled models, test-time augmentations, precisions, explain
methods), so the toolbox offers exactly what this geoseg accepts.

Nothing here imports QGIS; only :func:`choices` imports torch (to read the explain methods).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

from geoseg.errors import OutputExistsError, WriteError
from geoseg.io.atomic import atomic_output

__all__ = [
    "PLUGIN_NAME",
    "build_zip",
    "choices",
    "default_plugins_dir",
    "geoseg_command",
    "install_plugin",
    "plugin_files",
]

PLUGIN_NAME = "geoseg_processing"  # the plugin's folder name in QGIS
_SOURCE = Path(__file__).resolve().parent / PLUGIN_NAME


def choices() -> dict[str, list[str]]:
    """geoseg's choice lists that the provider's parameters offer."""
    from geoseg.explain.cam import METHODS
    from geoseg.inference.options import PRECISIONS, TTA_MODES
    from geoseg.models.default import BUNDLED_MODELS

    return {
        "models": list(BUNDLED_MODELS),
        "tta": list(TTA_MODES),
        "precision": list(PRECISIONS),
        "explain_methods": list(METHODS),
    }


def geoseg_command() -> list[str]:
    """The command that runs this very geoseg: this Python with ``-m geoseg``."""
    return [sys.executable, "-m", "geoseg"]


def plugin_files() -> dict[str, bytes]:
    """The plugin's files by their path inside the plugin folder, ``geoseg.json`` included."""
    from geoseg import __version__

    files = {
        p.relative_to(_SOURCE).as_posix(): p.read_bytes()
        for p in sorted(_SOURCE.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    record: dict[str, Any] = {
        "geoseg_version": __version__,
        "command": geoseg_command(),
        "choices": choices(),
    }
    files["geoseg.json"] = (json.dumps(record, indent=2) + "\n").encode()
    metadata = files["metadata.txt"].decode()  # the plugin's version is geoseg's
    files["metadata.txt"] = re.sub(r"(?m)^version=.*$", f"version={__version__}", metadata).encode()
    return files


def build_zip(dst: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write the plugin as a zip QGIS installs (Plugins > Manage and Install Plugins > Install
    from ZIP): one top folder, :data:`PLUGIN_NAME`.

    Raises:
        OutputExistsError: ``dst`` exists and ``overwrite`` is False.
    """
    from geoseg.io.writer import check_destination

    path = check_destination(dst, overwrite=overwrite)
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in plugin_files().items():
                z.writestr(f"{PLUGIN_NAME}/{name}", data)
    return path


def default_plugins_dir() -> Path:
    """The Python plugin folder of QGIS's default profile on this system."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "QGIS"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / "QGIS"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "QGIS"
    return base / "QGIS3" / "profiles" / "default" / "python" / "plugins"


def install_plugin(
    plugins_dir: str | os.PathLike[str] | None = None, *, overwrite: bool = False
) -> Path:
    """Copy the plugin into ``plugins_dir`` (default: QGIS's default profile) and return its
    folder; QGIS loads it once enabled (Plugins > Manage and Install Plugins > Installed).

    Raises:
        OutputExistsError: the plugin is installed already and ``overwrite`` is False.
        WriteError: the folder cannot be written.
    """
    folder = Path(plugins_dir) if plugins_dir is not None else default_plugins_dir()
    target = folder / PLUGIN_NAME
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"{target}: the geoseg plugin is installed there already; pass --overwrite to "
            "replace it (e.g. after upgrading geoseg)"
        )
    files = plugin_files()
    staging = folder / f".{PLUGIN_NAME}.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        for name, data in files.items():
            out = staging / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(
            f"{target}: cannot install the plugin ({exc.strerror or exc}); pass a folder you can "
            "write with --plugins-dir"
        ) from None
    return target
