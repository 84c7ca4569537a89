"""What earlier runs learnt about a model on this machine, kept on disk between processes.

Two things are worth remembering, because finding them out costs extra forward passes:

* the precision ``auto`` chose (fp32 and the fast precision compared on a first tile), and
* whether a frozen TorchScript trace of the model runs faster than the eager model here, and if
  it does, the frozen module itself (tracing a network costs seconds; loading it costs little
  and needs neither segmentation-models-pytorch nor timm).

Entries are keyed by a digest of the model's weights (or of its checkpoint file), the torch
version, and the tile shape. The folder is ``$GEOSEG_CACHE_DIR``, else
``$XDG_CACHE_HOME/geoseg``, else ``~/.cache/geoseg``; ``GEOSEG_CACHE_DIR=off`` turns the cache
off. Every file is written under a temporary name and renamed, so concurrent writers never leave
a torn file (the last writer wins), and a file that cannot be read is ignored and rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from geoseg.models.digest import file_digest, module_digest

__all__ = ["ModelCache", "cache_dir", "file_digest", "module_digest"]

log = logging.getLogger(__name__)

CACHE_ENV = "GEOSEG_CACHE_DIR"
_OFF = {"off", "0", "none", "false", "no"}


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is turned off."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in _OFF or not env.strip() else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "geoseg"


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class ModelCache:
    """Records (small JSON values) and frozen modules for one model on this machine.

    Args:
        digest: the model's digest (:func:`module_digest` or :func:`file_digest`).
        root: the cache folder; default :func:`cache_dir`. ``enabled=False`` keeps nothing.
    """

    def __init__(
        self, digest: str, root: str | os.PathLike[str] | None = None, *, enabled: bool = True
    ) -> None:
        import torch

        self.root = None if not enabled else (Path(root) if root is not None else cache_dir())
        self.key = hashlib.sha256(f"{digest}|torch {torch.__version__}".encode()).hexdigest()[:32]

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def _records(self) -> Path:
        assert self.root is not None
        return self.root / "models" / f"{self.key}.json"

    def _read(self) -> dict[str, Any]:
        if self.root is None:
            return {}
        try:
            data = json.loads(self._records().read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.info("ignoring unreadable cache file %s (%s)", self._records(), exc)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, name: str) -> Any:
        """The value recorded under ``name``, or None."""
        return self._read().get(name)

    def put(self, name: str, value: Any) -> None:
        """Record ``value`` (JSON) under ``name``; failures to write are logged, never raised."""
        if self.root is None:
            return
        try:
            data = self._read()
            data[name] = value
            with _atomic(self._records()) as tmp:
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        except OSError as exc:
            log.info("cannot write the model cache in %s (%s)", self.root, exc)

    def module_path(self, name: str) -> Path | None:
        return None if self.root is None else self.root / "frozen" / f"{self.key}-{name}.pt"

    def load_module(self, name: str) -> Any:
        """A saved TorchScript module, or None when absent or unreadable."""
        path = self.module_path(name)
        if path is None or not path.is_file():
            return None
        import warnings

        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", FutureWarning
                )  # TorchScript is deprecated upstream, still supported
                return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # a torn or foreign file: ignore it, it is rewritten next time
            log.info(
                "ignoring unreadable frozen module %s (%s)", path, str(exc).splitlines()[0][:200]
            )
            return None

    def save_module(self, name: str, save: Callable[[str], None]) -> None:
        """Write a module with ``save(path)`` under a temporary name, then rename it into place."""
        path = self.module_path(name)
        if path is None:
            return
        import warnings

        try:
            with _atomic(path) as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                save(str(tmp))
        except Exception as exc:
            log.info(
                "cannot save the frozen module to %s (%s)", path, str(exc).splitlines()[0][:200]
            )
