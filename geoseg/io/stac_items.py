"""STAC output: an Item per prediction, and a Catalog of them for a many-input run.

Everything an Item says is read back from the outputs themselves, so it describes what was
written: the geometry and bbox are the class mask's valid-data footprint in EPSG:4326
(:func:`~geoseg.io.footprint.valid_footprint`); ``proj:`` fields its grid; the mask's asset
carries the ``classification`` extension's classes (values, names, colours) from its class table;
``processing:`` fields and ``geoseg:`` fields hold its provenance (tags written by the
prediction); a ``derived_from`` link points to the STAC item it was predicted from. Items are STAC
1.1 with the projection v2.0.0, classification v1.1.0 and processing v1.2.0 extensions.

Files land beside the outputs (local folders or ``s3://`` prefixes), asset links relative to them,
so the folder can be moved or served as it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from geoseg.provenance import Provenance

__all__ = [
    "EXTENSIONS",
    "MEDIA_TYPES",
    "STAC_VERSION",
    "item_path",
    "prediction_item",
    "write_catalog",
    "write_item",
]

STAC_VERSION = "1.1.0"
EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
}
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
MEDIA_TYPES = {
    ".tif": COG,
    ".tiff": COG,
    ".gpkg": "application/geopackage+sqlite3",
    ".fgb": "application/vnd.flatgeobuf",
    ".geojson": "application/geo+json",
    ".json": "application/geo+json",
    ".parquet": "application/vnd.apache.parquet",
}
# reading the header of an output geoseg wrote needs no side-car (.aux.xml, .ovr): GDAL need not
# list the folder or bucket prefix for them
OWN_OUTPUT = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
TITLES = {
    "classes": "Class mask",
    "probabilities": "Class probabilities (0-255)",
    "confidence": "Confidence of the winning class (0-255)",
    "polygons": "Polygons of the classes",
}


def item_path(mask: str) -> str:
    """Where the Item of the class mask ``mask`` goes: beside it, ``NAME.stac.json``."""
    base, ext = os.path.splitext(mask)
    return f"{base}.stac.json" if ext.lower() in (".tif", ".tiff") else f"{mask}.stac.json"


def _name(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _folder(path: str) -> str:
    text = path.replace("\\", "/")
    return text.rsplit("/", 1)[0] if "/" in text else "."


def _href(target: str, item: str) -> str:
    """``target`` relative to the Item's folder when it sits there, else as it is (absolute)."""
    if _folder(os.path.abspath(target) if "://" not in target else target) == _folder(
        os.path.abspath(item) if "://" not in item else item
    ):
        return "./" + _name(target)
    return target if "://" in target else os.path.abspath(target)


def _classes(table: Any) -> list[dict[str, Any]]:
    return [
        {"value": c.id, "name": c.name, "description": c.name, "color_hint": c.hex()[1:].upper()}
        for c in table
    ]


def _source_item(provenance: Provenance | None) -> dict[str, Any] | None:
    """The STAC item the prediction was made from, if it can still be read."""
    if provenance is None or provenance.item is None or provenance.input is None:
        return None
    from geoseg.errors import StacError
    from geoseg.io.stac import read_json

    base = provenance.input.partition("#")[0]
    try:
        doc = read_json(base)
    except StacError:
        return None
    if doc.get("type") == "FeatureCollection":
        return next((f for f in doc.get("features", []) if f.get("id") == provenance.item), None)
    return doc


def prediction_item(
    outputs: Mapping[str, str],
    dst: str,
    *,
    item_id: str | None = None,
    provenance: Provenance | None = None,
) -> dict[str, Any]:
    """The STAC Item (a JSON-ready dict) of a prediction's outputs.

    Args:
        outputs: asset key -> path or URL: ``classes`` (the class mask, required), and any of
            ``probabilities``, ``confidence``, ``polygons``.
        dst: where the Item will be written (asset links are made relative to it).
        item_id: the Item's id [default: the mask's file name without extension].
        provenance: how the outputs were made [default: read from the mask's tags].

    Raises:
        RasterOpenError: the mask cannot be opened.
    """
    import rasterio

    from geoseg.classes import classes_of
    from geoseg.io.atomic import pending_path
    from geoseg.io.footprint import valid_footprint
    from geoseg.io.open import is_url, open_raster

    mask = outputs["classes"]
    # within a run that publishes its outputs together, the mask still waits under its
    # temporary name
    where = mask if is_url(mask) else pending_path(mask)
    with rasterio.Env(**OWN_OUTPUT), open_raster(where) as ds:
        footprint = valid_footprint(ds)
        classes = classes_of(ds)
        tags = ds.tags()
        crs, transform, shape = ds.crs, ds.transform, (ds.height, ds.width)
        nodata = ds.nodata
        bounds = ds.bounds
    prov = provenance or Provenance.from_tags(tags)
    source = _source_item(prov)
    props: dict[str, Any] = {}
    if source is not None and (source.get("properties") or {}).get("datetime"):
        props["datetime"] = source["properties"]["datetime"]
    elif source is not None and (source.get("properties") or {}).get("start_datetime"):
        for key in ("start_datetime", "end_datetime"):
            props[key] = source["properties"][key]
        props["datetime"] = None
    else:
        props["datetime"] = prov.created if prov is not None else None
    if props.get("datetime") is None and "start_datetime" not in props:
        from geoseg.provenance import utc_now

        props["datetime"] = utc_now()
    epsg = crs.to_epsg() if crs is not None else None
    props["proj:code"] = f"EPSG:{epsg}" if epsg else None
    if crs is not None and epsg is None:
        props["proj:wkt2"] = crs.to_wkt()
    props["proj:shape"] = list(shape)
    props["proj:transform"] = [
        transform.a,
        transform.b,
        transform.c,
        transform.d,
        transform.e,
        transform.f,
    ]
    props["proj:bbox"] = [bounds.left, bounds.bottom, bounds.right, bounds.top]
    if prov is not None:
        props["created"] = prov.created
        props["processing:software"] = {"geoseg": prov.version}
        props["processing:datetime"] = prov.created
        props["processing:lineage"] = (
            f"Segmented by geoseg {prov.version} with the model {prov.model}"
            + (f" (weights digest {prov.model_digest})" if prov.model_digest else "")
            + (f" from STAC item {prov.item}" if prov.item else "")
        )
        props.update({f"geoseg:{k}": v for k, v in prov.to_dict().items() if k != "created"})
    asset_fields: dict[str, Any] = {"roles": ["data"], "type": COG, "title": TITLES["classes"]}
    if classes is not None:
        asset_fields["classification:classes"] = _classes(classes)
    if nodata is not None:
        asset_fields["nodata"] = int(nodata)
    asset_fields["data_type"] = "uint8"
    assets = {"classes": {"href": _href(mask, dst), **asset_fields}}
    for key, path in outputs.items():
        if key == "classes" or path is None:
            continue
        ext = os.path.splitext(_name(path))[1].lower()
        assets[key] = {
            "href": _href(path, dst),
            "type": MEDIA_TYPES.get(ext, "application/octet-stream"),
            "roles": ["data"],
            "title": TITLES.get(key, key),
        }
    links: list[dict[str, Any]] = []
    if prov is not None and prov.item is not None and prov.input is not None:
        href = prov.input if "://" in prov.input else os.path.abspath(prov.input)
        links.append(
            {
                "rel": "derived_from",
                "href": href,
                "type": "application/geo+json",
                "title": f"STAC item {prov.item}",
            }
        )
    bbox = _bbox(footprint) if footprint is not None else None
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXTENSIONS["proj"], EXTENSIONS["classification"]]
        + ([EXTENSIONS["processing"]] if prov is not None else []),
        "id": item_id or os.path.splitext(_name(mask))[0],
        "geometry": footprint,
        **({"bbox": bbox} if bbox is not None else {}),
        "properties": {k: v for k, v in props.items() if v is not None or k == "datetime"},
        "links": links,
        "assets": assets,
    }
    return item


def _bbox(geometry: Mapping[str, Any]) -> list[float]:
    from shapely.geometry import shape

    left, bottom, right, top = shape(geometry).bounds
    return [round(v, 7) for v in (left, bottom, right, top)]


def _write_json(doc: Mapping[str, Any], dst: str) -> str:
    from geoseg.io.atomic import atomic_output
    from geoseg.io.storage import published

    with published(dst) as local, atomic_output(local) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return dst


def write_item(
    outputs: Mapping[str, str],
    dst: str | None = None,
    *,
    item_id: str | None = None,
    provenance: Provenance | None = None,
    catalog: str | None = None,
) -> str:
    """Write the STAC Item of a prediction's outputs (see :func:`prediction_item`).

    Args:
        outputs: asset key -> path or URL (``classes`` required).
        dst: the Item's path or ``s3://`` URL [default: :func:`item_path` of the mask].
        item_id, provenance: as :func:`prediction_item` takes them.
        catalog: the ``catalog.json`` the Item belongs to (links ``root`` and ``parent``).

    Returns:
        Where the Item was written.
    """
    dst = dst or item_path(outputs["classes"])
    item = prediction_item(outputs, dst, item_id=item_id, provenance=provenance)
    if catalog is not None:
        for rel in ("root", "parent"):
            item["links"].append(
                {"rel": rel, "href": _href(catalog, dst), "type": "application/json"}
            )
    return _write_json(item, dst)


def write_catalog(
    items: Sequence[str],
    dst: str,
    *,
    title: str = "geoseg predictions",
) -> str:
    """Write a static STAC Catalog ``dst`` (``catalog.json``) linking ``items``.

    Returns:
        Where the Catalog was written.
    """
    from geoseg._version import __version__

    links = [{"rel": "root", "href": "./" + _name(dst), "type": "application/json"}]
    links += [
        {"rel": "item", "href": _href(item, dst), "type": "application/geo+json"} for item in items
    ]
    catalog = {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "geoseg-predictions",
        "title": title,
        "description": f"Segmentations by geoseg {__version__}: {len(items)} item(s).",
        "links": links,
    }
    return _write_json(catalog, dst)
