"""Validate STAC documents with pystac, offline: the core schemas pystac ships, the extension
schemas kept in ``tests/data/stac-schemas/`` (their sources in its ``SOURCE.md``); any other
schema URL fails instead of being downloaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

__all__ = ["SCHEMAS", "offline_validator", "validate_file"]

SCHEMAS = Path(__file__).resolve().parent / "data" / "stac-schemas"


def offline_validator() -> Any:
    """A pystac validator that reads every schema from this machine."""
    pytest.importorskip("jsonschema", reason="STAC validation needs jsonschema (dev extra)")
    from pystac.validation import JsonSchemaSTACValidator

    class Offline(JsonSchemaSTACValidator):
        def _get_schema(self, schema_uri: str) -> dict[str, Any]:
            if schema_uri not in self.schema_cache:
                raise AssertionError(f"{schema_uri}: no local copy; nothing is downloaded")
            return self.schema_cache[schema_uri]

    validator = Offline()
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        uri = schema["$id"].rstrip("#")
        validator.schema_cache[uri] = schema
    return validator


def validate_file(path: str | Path) -> list[str]:
    """Validate a STAC Item or Catalog file as written (``migrate=False``: pystac would otherwise
    move it to the newest extension versions first); returns the schema URLs it was checked
    against."""
    import pystac

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    cls = pystac.Item if doc.get("type") == "Feature" else pystac.Catalog
    obj = cls.from_dict(doc, href=str(path), migrate=False)
    return [str(uri) for uri in obj.validate(validator=offline_validator()) if uri]
