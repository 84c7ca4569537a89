"""How an output was made: one typed value, built once at the door that makes the output.

A :class:`Provenance` records the geoseg version, the model (the name a person knows it by and a
digest of its weights), the options that change pixels, the input (a path or URL, and the STAC
item id when the input is a STAC item) and the UTC time. It travels into every output: the tags of
the COGs, the metadata of the polygon files, the ``provenance.json`` of the train, evaluate and
diagnose run folders, and the STAC Items. ``geoseg info`` shows it.

Two requests are the same when everything but the time and the version is the same
(:meth:`Provenance.same_request`): a run over a catalog skips the outputs that such a request made
and redoes the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geoseg._version import __version__

__all__ = ["TAG_PREFIX", "Provenance", "utc_now"]

TAG_PREFIX = "GEOSEG_"
# the raster tags a provenance writes (GEOSEG_MODEL stays the architecture, as before)
_TAGS = {
    "version": "GEOSEG_VERSION",
    "model": "GEOSEG_MODEL_NAME",
    "model_digest": "GEOSEG_MODEL_DIGEST",
    "options": "GEOSEG_OPTIONS",
    "inputs": "GEOSEG_INPUT",
    "item": "GEOSEG_STAC_ITEM",
    "created": "GEOSEG_CREATED",
}


def utc_now() -> str:
    """The current UTC time, to the second, as ISO 8601 (``2026-05-01T12:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    """``value`` as JSON holds it (tuples become lists), so a provenance read back compares equal
    to the one written."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class Provenance:
    """What made an output.

    Attributes:
        model: the name a person knows the model by (``quality``, ``fast``, a file name), or None.
        model_digest: a digest of the model's weights (hex), or None.
        options: the options that change pixels, JSON-ready (e.g. ``tile_size``, ``overlap``,
            ``blend``, ``precision``, ``tta``, ``bands``, ``scale``).
        inputs: the input paths or URLs (one for a prediction).
        item: the STAC item id of the input, when it is a STAC item.
        created: UTC time, ISO 8601.
        version: the geoseg version that made it.
    """

    model: str | None
    model_digest: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    item: str | None = None
    created: str = field(default_factory=utc_now)
    version: str = __version__

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _plain(dict(self.options)))
        object.__setattr__(self, "inputs", tuple(str(i) for i in self.inputs))

    @property
    def input(self) -> str | None:
        """The input, when there is one."""
        return self.inputs[0] if len(self.inputs) == 1 else None

    def replace(self, **changes: Any) -> Provenance:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def same_request(self, other: Provenance | None) -> bool:
        """Whether ``other`` records the same request: model digest, options, inputs and item
        (the time and the geoseg version may differ)."""
        return other is not None and self._request() == other._request()

    def _request(self) -> tuple[Any, ...]:
        return (self.model_digest, self.options, self.inputs, self.item)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``inputs`` as a list)."""
        return {
            "version": self.version,
            "model": self.model,
            "model_digest": self.model_digest,
            "options": dict(self.options),
            "inputs": list(self.inputs),
            "item": self.item,
            "created": self.created,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``provenance.json`` into a run folder (atomically); returns its path."""
        from geoseg.io.atomic import atomic_output

        path = Path(folder) / "provenance.json"
        with atomic_output(path) as tmp:
            tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Provenance:
        inputs = d.get("inputs") or ()
        return cls(
            model=d.get("model"),
            model_digest=d.get("model_digest"),
            options=dict(d.get("options") or {}),
            inputs=(inputs,) if isinstance(inputs, str) else tuple(inputs),
            item=d.get("item"),
            created=str(d.get("created") or ""),
            version=str(d.get("version") or "?"),
        )

    def to_tags(self) -> dict[str, str]:
        """Raster tags (GDAL metadata), one per field: ``gdalinfo`` and QGIS list them."""
        d = self.to_dict()
        d["options"] = json.dumps(d["options"], sort_keys=True)
        d["inputs"] = d["inputs"][0] if len(d["inputs"]) == 1 else json.dumps(d["inputs"])
        return {tag: str(d[key]) for key, tag in _TAGS.items() if d[key] is not None}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Provenance | None:
        """The provenance written by :meth:`to_tags`, or None when the tags hold none (a raster
        geoseg did not write, or an older geoseg wrote)."""
        if _TAGS["created"] not in tags or _TAGS["version"] not in tags:
            return None
        d: dict[str, Any] = {key: tags.get(tag) for key, tag in _TAGS.items()}
        try:
            d["options"] = json.loads(d["options"] or "{}")
        except ValueError:
            d["options"] = {"unreadable": d["options"]}
        text = d["inputs"] or ""
        d["inputs"] = json.loads(text) if text.startswith("[") else ([text] if text else [])
        return cls.from_dict(d)

    def describe(self) -> list[str]:
        """Lines for a person: what made the output."""
        digest = f" (weights {self.model_digest[:12]})" if self.model_digest else ""
        lines = [f"geoseg {self.version}, {self.created}, model {self.model or 'none'}{digest}"]
        for source in self.inputs:
            lines.append(f"input {source}" + (f" (STAC item {self.item})" if self.item else ""))
        if self.options:
            lines.append(
                "options "
                + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.options.items()))
            )
        return lines
