"""The models the app offers: the bundled one and the checkpoints of one configured folder.

A model is chosen by its name in the picker only; the name is looked up in a table built by
listing the folder, never joined onto a path, so no name can reach a file outside the folder.
Checkpoints are safetensors (never pickles) or ONNX files written by ``geoseg export`` (run by
onnxruntime; the ``export`` extra); each is loaded once and kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.errors import GeosegError, ModelError
from geoseg.models.config import ModelConfig, read_config

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.models.checkpoint import LoadedModel

__all__ = ["ModelCatalog", "ModelEntry"]

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".onnx")  # checkpoints, and models written by geoseg export


@dataclass(frozen=True)
class ModelEntry:
    """One model in the picker: its name, file and self-description."""

    name: str
    path: Path
    config: ModelConfig

    def describe(self) -> str:
        """A short Markdown description: architecture, classes, bands, GSD, tiling."""
        cfg = self.config
        bands = ", ".join(cfg.band_names) if cfg.band_names else f"{cfg.in_channels} band(s)"
        gsd = f"{cfg.gsd:g} m" if cfg.gsd else "not recorded"
        classes = ", ".join(cfg.classes.names)
        return (
            f"**{self.name}**: {cfg.architecture} / {cfg.encoder}  \n"
            f"classes ({cfg.num_classes}): {classes}  \n"
            f"bands: {bands} ({cfg.band_dtype or 'any dtype'}); GSD: {gsd}  \n"
            f"tile {cfg.tile_size} px, overlap {cfg.overlap} px, sizes in multiples of "
            f"{cfg.output_stride}"
        )


def _config_of(path: Path) -> ModelConfig:
    """The self-description of a checkpoint, or of an exported ONNX file (its ``geoseg_config``)."""
    if path.suffix == ".onnx":
        from geoseg.export.onnx import read_metadata

        try:
            meta = read_metadata(path)
        except GeosegError:
            raise
        except Exception as exc:  # onnx raises protobuf's own errors for a damaged file
            raise ModelError(
                f"{path.name}: not a readable ONNX file ({str(exc).splitlines()[0][:120]})"
            ) from None
        if "geoseg_config" not in meta:
            raise ModelError(
                f"{path.name}: an ONNX file without geoseg metadata; export it with geoseg export"
            )
        return ModelConfig.from_json(meta["geoseg_config"], source=str(path))
    return read_config(path)


class ModelCatalog:
    """The bundled model plus ``*.safetensors`` and exported ``*.onnx`` files directly inside
    ``models_dir``.

    Args:
        models_dir: folder to list (not recursive); ``None`` for the bundled model only.
        include_bundled: offer the bundled model.
    """

    def __init__(self, models_dir: Path | None = None, *, include_bundled: bool = True) -> None:
        self.models_dir = models_dir.resolve() if models_dir is not None else None
        self.include_bundled = include_bundled
        self._entries: dict[str, ModelEntry] = {}
        self._loaded: dict[str, tuple[Path, LoadedModel]] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> list[str]:
        """List the folder again (new checkpoints appear, removed ones go); returns the names."""
        entries: dict[str, ModelEntry] = {}
        if self.include_bundled:
            from geoseg.models.default import BUNDLED_MODELS, bundled_model, default_model
            from geoseg.models.resolve import model_label

            finds: list[Callable[[], Path | None]] = [
                default_model,
                *(partial(bundled_model, n) for n in BUNDLED_MODELS),
            ]
            for find in finds:
                try:
                    path = find()
                    name = model_label(path) if path is not None else ""
                    if path is not None and name not in entries:
                        # one name per bundled model at every door: quality, fast
                        entries[name] = ModelEntry(name, path, read_config(path))
                except GeosegError as exc:
                    log.warning("bundled model not offered: %s", exc)
        if self.models_dir is not None:
            for path in sorted(self.models_dir.iterdir()):
                if (
                    path.suffix not in CHECKPOINT_SUFFIXES
                    or path.name.startswith(".")
                    or not path.is_file()
                ):
                    continue
                real = path.resolve()
                if (
                    real.parent != self.models_dir
                ):  # a link leading out of the folder is not offered
                    log.warning("%s points outside %s; not offered", path.name, self.models_dir)
                    continue
                try:
                    entries.setdefault(
                        path.stem if path.suffix == ".safetensors" else path.name,
                        ModelEntry(
                            path.stem if path.suffix == ".safetensors" else path.name,
                            real,
                            _config_of(real),
                        ),
                    )
                except GeosegError as exc:
                    log.warning("%s not offered: %s", path.name, exc)
        with self._lock:
            self._entries = entries
            # a model stays loaded while its name still means the same file
            self._loaded = {
                k: v for k, v in self._loaded.items() if k in entries and entries[k].path == v[0]
            }
        return list(entries)

    def names(self) -> list[str]:
        """Names in picker order (the bundled model first)."""
        return list(self._entries)

    def default_name(self) -> str | None:
        return next(iter(self._entries), None)

    def entry(self, name: str) -> ModelEntry:
        """The entry called ``name``.

        Raises:
            ModelError: no model has that name (e.g. a path was sent); the message lists the names.
        """
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}..."
            raise ModelError(
                f"unknown model {shown!r}; expected one of: "
                f"{', '.join(self._entries) or 'none (no checkpoints found)'}. Models are chosen "
                "by name from the server's model folder only"
            )
        return entry

    def load(self, name: str) -> LoadedModel:
        """The model called ``name``, loaded on first use and kept (safetensors or ONNX, never a
        pickle)."""
        entry = self.entry(name)
        with self._lock:
            held = self._loaded.get(name)
            if held is None:
                from geoseg.models.resolve import resolve_model  # .safetensors or .onnx

                log.info("loading %s from %s", name, entry.path)
                held = (entry.path, resolve_model(entry.path))
                self._loaded[name] = held
            return held[1]
