"""STAC input: an item's assets as one raster GDAL opens, and catalogs as many inputs.

A STAC Item (a ``.json`` path or URL, or a STAC API item URL) becomes a VRT in GDAL's in-memory
file system (``/vsimem/``) holding the bands a model needs, in its order, picked by name:

- each asset's bands are named by ``bands``/``eo:bands`` (``common_name`` or ``name``); a
  single-band asset also by its key; a ``visual`` asset without band names holds red, green, blue;
- the asset whose data type is the model's (``raster:bands`` ``data_type``) wins, then the asset
  holding most of the wanted bands (one ``visual`` asset rather than three), then the finest;
- bands of several assets are stacked onto the finest asset's grid (coarser bands by nearest
  neighbour: each 20 m pixel becomes 2 x 2 pixels of 10 m, no value is invented); they must share
  a CRS;
- ``raster:bands`` ``scale``/``offset`` are applied (the band becomes float32) and ``nodata``
  pixels become no data.

The session reads that VRT like any raster; the item's URL and id travel with it
(:class:`StacRaster`). An ItemCollection (``items.json``, each item named ``items.json#ID``) or a
static catalog (``catalog.json``, walked recursively) is many inputs (:func:`stac_inputs`).
JSON is read from local paths, ``http(s)://`` and ``s3://``. pystac is imported on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import escape

from geoseg.errors import StacError

__all__ = [
    "AssetBand",
    "StacRaster",
    "asset_bands",
    "is_stac",
    "open_stac",
    "pick_bands",
    "read_json",
    "stac_inputs",
    "stac_item_id",
]

RASTER_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-geotiff")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
NOT_DATA = {"thumbnail", "overview", "metadata", "cloud", "snow-ice", "water-mask"}
RGB = ("red", "green", "blue")


def _split(src: str) -> tuple[str, str | None]:
    """``items.json#ID`` -> ``("items.json", "ID")``."""
    base, _, fragment = src.partition("#")
    return base, fragment or None


def is_stac(src: str | os.PathLike[str]) -> bool:
    """Whether ``src`` names STAC JSON: a ``.json`` path or URL (``#ID`` naming one item of an
    ItemCollection), or a STAC API item URL (``.../collections/C/items/ID``)."""
    text = str(src)
    base, _ = _split(text)
    path = urlparse(base).path if "://" in base else base
    if path.lower().endswith(".json"):
        return True
    return text.startswith(("http://", "https://")) and "/items/" in path


def _read_text(href: str) -> str:
    if href.startswith("s3://"):
        from geoseg.io.storage import read_object

        return read_object(href).decode("utf-8")
    if href.startswith(("http://", "https://")):
        import urllib.request

        from geoseg.io.storage import http_defaults

        http_defaults()
        request = urllib.request.Request(
            href, headers={"Accept": "application/geo+json, application/json"}
        )
        try:
            with urllib.request.urlopen(
                request, timeout=float(os.environ["GDAL_HTTP_TIMEOUT"])
            ) as answer:
                return str(answer.read().decode("utf-8"))
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StacError(
                f"{href}: could not read the STAC JSON ({reason}); check the URL and the network"
            ) from None
    path = Path(href.removeprefix("file://"))
    if not path.is_file():
        raise StacError(
            f"{href}: no such file; expected a STAC item, item collection or catalog (.json)"
        )
    return path.read_text(encoding="utf-8")


@lru_cache(maxsize=1024)
def read_json(href: str) -> dict[str, Any]:
    """A STAC document from a path or an ``http(s)://``/``s3://`` URL (remembered per process).

    Raises:
        StacError: it cannot be read, or is not JSON.
    """
    text = _read_text(href)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise StacError(f"{href}: not JSON ({exc}); expected a STAC item or catalog") from None
    if not isinstance(doc, dict) or "type" not in doc:
        raise StacError(
            f"{href}: JSON without a 'type'; expected a STAC Item (Feature), an ItemCollection "
            "(FeatureCollection) or a Catalog/Collection"
        )
    return doc


def _stac_io() -> Any:
    import pystac

    class GeosegStacIO(pystac.StacIO):
        """pystac reads through :func:`read_json`'s reader (paths, http(s), s3)."""

        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            return json.dumps(read_json(str(source)))  # remembered: the items are read again

        def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
            raise StacError(f"{dest}: geoseg does not write into the input catalog")

    return GeosegStacIO()


def _item_dict(src: str) -> tuple[dict[str, Any], str]:
    """The item's JSON and the href its relative links resolve against."""
    base, fragment = _split(src)
    doc = read_json(base)
    kind = doc.get("type")
    if kind == "Feature":
        return doc, base
    if kind == "FeatureCollection":
        ids = [f.get("id") for f in doc.get("features", [])]
        if fragment is None:
            raise StacError(
                f"{src}: an ItemCollection of {len(ids)} item(s); name one as {base}#ID, or give "
                "an output folder to predict them all"
            )
        for feature in doc.get("features", []):
            if feature.get("id") == fragment:
                return feature, base
        raise StacError(
            f"{src}: no item {fragment!r} in this ItemCollection; it holds "
            f"{', '.join(map(str, ids[:10]))}{'...' if len(ids) > 10 else ''}"
        )
    if kind in ("Catalog", "Collection"):
        raise StacError(
            f"{src}: a STAC {kind}, that is many items; give an output folder as DST to predict "
            "them all"
        )
    raise StacError(f"{src}: a STAC document of type {kind!r}; expected an Item (Feature)")


def stac_item_id(src: str | os.PathLike[str]) -> str:
    """The id of the STAC item ``src`` names."""
    doc, _ = _item_dict(str(src))
    return str(doc.get("id"))


def stac_inputs(src: str) -> list[str]:
    """The items a STAC document names, as inputs: an Item itself; each item of an ItemCollection
    as ``items.json#ID``; each item of a static catalog (walked recursively) by its URL or path.

    Raises:
        StacError: it cannot be read or holds no item.
    """
    base, fragment = _split(src)
    doc = read_json(base)
    kind = doc.get("type")
    if kind == "Feature" or fragment is not None:
        return [src]
    if kind == "FeatureCollection":
        out = [f"{base}#{f.get('id')}" for f in doc.get("features", [])]
    elif kind in ("Catalog", "Collection"):
        import pystac

        cls = pystac.Collection if kind == "Collection" else pystac.Catalog
        catalog = cls.from_file(base, stac_io=_stac_io())
        out = [str(item.get_self_href()) for item in catalog.get_items(recursive=True)]
    else:
        raise StacError(f"{src}: a STAC document of type {kind!r}; expected items or a catalog")
    if not out:
        raise StacError(f"{src}: a STAC {kind} without any item")
    return out


@dataclass(frozen=True)
class AssetBand:
    """One band of one asset of an item.

    Attributes:
        asset: the asset's key.
        href: the asset's absolute URL or path.
        index: the band in the asset (1-based).
        names: what the band may be asked for by (common name, name, a single-band asset's key).
        data_type: ``raster:bands`` data type (``uint16``...), if given.
        scale, offset: ``raster:bands`` scale and offset (value = raw * scale + offset).
        nodata: the no-data value, if given.
        count: bands in the asset.
    """

    asset: str
    href: str
    index: int
    names: tuple[str, ...]
    data_type: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    count: int = 1

    @property
    def name(self) -> str:
        return self.names[0]


def _is_raster(key: str, asset: dict[str, Any]) -> bool:
    roles = set(asset.get("roles") or [])
    if roles & NOT_DATA and not roles & {"data", "visual"}:
        return False
    kind = str(asset.get("type") or "").lower()
    href = str(asset.get("href") or "").split("?", 1)[0].lower()
    return kind.startswith(RASTER_TYPES) or href.endswith(RASTER_SUFFIXES)


def _number(value: Any, default: float | None) -> float | None:
    return default if value is None else float(value)


def asset_bands(item: dict[str, Any], base: str) -> list[AssetBand]:
    """Every band of every raster asset of an item (thumbnails and overviews left out), named as
    :mod:`this module <geoseg.io.stac>` says. Reads STAC 1.0 (``eo:bands``, ``raster:bands``) and
    1.1 (``bands``) items."""
    out: list[AssetBand] = []
    for key, asset in (item.get("assets") or {}).items():
        if not _is_raster(key, asset):
            continue
        href = _join(base, asset["href"])
        bands = asset.get("bands") or asset.get("eo:bands") or []
        raster = asset.get("raster:bands") or [{} for _ in bands]
        roles = set(asset.get("roles") or [])
        if not bands and ("visual" in roles or key == "visual"):
            bands = [{"common_name": c} for c in RGB]
            raster = [{} for _ in bands]
        if not bands:
            bands, raster = [{}], (raster[:1] or [{}])
        for i, band in enumerate(bands):
            info = {**(raster[i] if i < len(raster) else {}), **band}
            names = [
                info.get("eo:common_name"),
                info.get("common_name"),
                info.get("name"),
                key if len(bands) == 1 else None,
            ]
            out.append(
                AssetBand(
                    asset=key,
                    href=href,
                    index=i + 1,
                    names=tuple(dict.fromkeys(str(n).lower() for n in names if n)),
                    data_type=info.get("data_type") or asset.get("data_type"),
                    scale=_number(info.get("raster:scale", info.get("scale")), 1.0) or 1.0,
                    offset=_number(info.get("raster:offset", info.get("offset")), 0.0) or 0.0,
                    nodata=_number(info.get("nodata", asset.get("nodata")), None),
                    count=len(bands),
                )
            )
    return out


def _join(base: str, href: str) -> str:
    """``href`` resolved against the document ``base`` (a path or any ``scheme://`` URL, s3://
    too, which ``urljoin`` leaves alone)."""
    if "://" in href or href.startswith("/"):
        return href
    if "://" not in base:
        return str((Path(base).parent / href).resolve())
    scheme, rest = base.split("://", 1)
    host, _, path = rest.partition("/")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname("/" + path), href))
    return f"{scheme}://{host}{joined}"


def _gsd(item: dict[str, Any], key: str) -> float:
    asset = item["assets"][key]
    value = asset.get("gsd") or (asset.get("eo:bands") or [{}])[0].get("gsd")
    return float(value or item.get("properties", {}).get("gsd") or 0.0)


def pick_bands(
    item: dict[str, Any],
    base: str,
    wanted: Sequence[str],
    *,
    data_type: str | None = None,
) -> list[AssetBand]:
    """The asset band of each wanted name, in order (see the module for the preference).

    Raises:
        StacError: a name no asset holds, with the bands the item has.
    """
    bands = asset_bands(item, base)
    names = [w.lower() for w in wanted]
    # how many of the wanted bands each asset holds: one visual asset beats three band assets
    covers = {
        asset: sum(any(n in b.names for b in bands if b.asset == asset) for n in names)
        for asset in {b.asset for b in bands}
    }
    out = []
    for name in names:
        found = [b for b in bands if name in b.names]
        if not found:
            have = ", ".join(
                f"{b.asset}"
                + (f" ({'/'.join(b.names)})" if b.names and b.names != (b.asset,) else "")
                for b in bands
            )
            raise StacError(
                f"{item.get('id')}: no asset holds the band {name!r} the model needs; expected an "
                f"asset named {name} or one whose eo:bands common_name is {name}. The item has: "
                f"{have or 'no raster asset'}. Name other bands with --bands (e.g. "
                f"--bands {','.join(RGB)})"
            )
        found.sort(
            key=lambda b: (
                data_type is not None and b.data_type not in (None, data_type),
                -covers[b.asset],
                _gsd(item, b.asset),
            )
        )
        out.append(found[0])
    return out


@dataclass(frozen=True)
class StacRaster:
    """A STAC item's bands as one raster.

    Attributes:
        path: what GDAL opens (a VRT in ``/vsimem/``, valid in this process).
        href: the item's URL or path (``items.json#ID`` for an item of an ItemCollection).
        item_id: the item's id.
        bands: the band of each raster band, in order.
    """

    path: str
    href: str
    item_id: str
    bands: tuple[AssetBand, ...]

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b.asset for b in self.bands))


_VRTS: dict[str, Any] = {}  # the in-memory files, kept for the life of the process
_VRTS_LOCK = threading.Lock()


def _grid(href: str) -> dict[str, Any]:
    from geoseg.io.open import open_raster

    with open_raster(href) as ds:
        return {
            "width": ds.width,
            "height": ds.height,
            "transform": ds.transform,
            "crs": ds.crs,
            "dtypes": ds.dtypes,
            "nodata": ds.nodata,
            "count": ds.count,
        }


def _vrt_xml(item_id: str, bands: Sequence[AssetBand]) -> str:
    """A VRT stacking ``bands`` onto the grid of the finest asset among them."""
    from geoseg.io.open import to_gdal_path

    grids = {b.href: _grid(b.href) for b in bands}
    crs = {str(g["crs"]) for g in grids.values()}
    if len(crs) > 1:
        raise StacError(
            f"{item_id}: the assets {', '.join(sorted({b.asset for b in bands}))} are in different "
            f"CRS ({', '.join(sorted(crs))}); geoseg stacks assets of one CRS. Pick assets of one "
            "grid with --bands"
        )
    for b in bands:
        t = grids[b.href]["transform"]
        if t.b or t.d:
            raise StacError(f"{b.href}: a rotated grid; geoseg stacks north-up assets only")
        if b.index > grids[b.href]["count"]:
            raise StacError(
                f"{b.href}: the item says band {b.index} of asset {b.asset}, the file has "
                f"{grids[b.href]['count']}"
            )
    finest = min(grids.values(), key=lambda g: abs(g["transform"].a))
    t0 = finest["transform"]
    nodatas = {b.nodata if b.nodata is not None else grids[b.href]["nodata"] for b in bands}
    scaled = any(b.scale != 1.0 or b.offset != 0.0 for b in bands)
    as_float = scaled or len(nodatas) > 1
    lines = [
        f'<VRTDataset rasterXSize="{finest["width"]}" rasterYSize="{finest["height"]}">',
        f"<SRS>{escape(finest['crs'].to_wkt()) if finest['crs'] else ''}</SRS>",
        f"<GeoTransform>{', '.join(repr(float(v)) for v in t0.to_gdal())}</GeoTransform>",
    ]
    for k, b in enumerate(bands, start=1):
        g = grids[b.href]
        t = g["transform"]
        nodata = b.nodata if b.nodata is not None else g["nodata"]
        dtype = "Float32" if as_float else _gdal_type(g["dtypes"][b.index - 1])
        x0, y0 = (t.c - t0.c) / t0.a, (t.f - t0.f) / t0.e
        xs, ys = g["width"] * t.a / t0.a, g["height"] * t.e / t0.e
        band_nodata = "nan" if as_float else (repr(nodata) if nodata is not None else None)
        source = "ComplexSource" if as_float else "SimpleSource"
        lines.append(f'<VRTRasterBand dataType="{dtype}" band="{k}">')
        lines.append(f"<Description>{escape(b.name)}</Description>")
        if band_nodata is not None:
            lines.append(f"<NoDataValue>{band_nodata}</NoDataValue>")
        lines += [
            f'<{source} resampling="nearest">',
            f'<SourceFilename relativeToVRT="0">{escape(to_gdal_path(b.href))}</SourceFilename>',
            f"<SourceBand>{b.index}</SourceBand>",
            f'<SrcRect xOff="0" yOff="0" xSize="{g["width"]}" ySize="{g["height"]}"/>',
            f'<DstRect xOff="{x0!r}" yOff="{y0!r}" xSize="{xs!r}" ySize="{ys!r}"/>',
        ]
        if as_float:
            if nodata is not None:
                lines.append(f"<NODATA>{nodata!r}</NODATA>")
            lines.append(f"<ScaleOffset>{b.offset!r}</ScaleOffset>")
            lines.append(f"<ScaleRatio>{b.scale!r}</ScaleRatio>")
        lines += [f"</{source}>", "</VRTRasterBand>"]
    lines.append("</VRTDataset>")
    return "\n".join(lines)


def _gdal_type(dtype: str) -> str:
    names = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16"}
    names |= {"uint32": "UInt32", "int32": "Int32", "float32": "Float32", "float64": "Float64"}
    return names.get(dtype, "Float32")


def open_stac(
    src: str | os.PathLike[str],
    wanted: Sequence[str] | None,
    *,
    data_type: str | None = None,
) -> StacRaster:
    """The bands ``wanted`` of the STAC item ``src`` as one raster (see the module).

    Args:
        src: the item's path or URL (``items.json#ID`` for an item of an ItemCollection).
        wanted: band names in the model's order (``red``, ``green``, ``blue``, ``nir``...);
            None or empty: the item's ``visual`` asset.
        data_type: the data type the model was trained on: assets of that type are preferred.

    Raises:
        StacError: the item cannot be read, or lacks a wanted band (one line, with the bands it
            has).
    """
    from rasterio.io import MemoryFile

    text = str(src)
    item, base = _item_dict(text)
    item_id = str(item.get("id"))
    if not wanted:
        visual = [
            b
            for b in asset_bands(item, base)
            if b.asset == "visual" or "visual" in (item["assets"][b.asset].get("roles") or [])
        ]
        if not visual:
            raise StacError(
                f"{item_id}: the model records no band names and the item has no visual asset; "
                "name the bands to use with --bands (e.g. --bands red,green,blue)"
            )
        bands = visual
    else:
        bands = pick_bands(item, base, wanted, data_type=data_type)
    xml = _vrt_xml(item_id, bands)
    digest = hashlib.sha256(xml.encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in item_id)[:100]
    with _VRTS_LOCK:
        memfile = _VRTS.get(digest)
        if memfile is None:
            memfile = MemoryFile(
                xml.encode(), dirname=f"geoseg-stac/{digest}", filename=f"{safe}.vrt"
            )
            _VRTS[digest] = memfile
    return StacRaster(memfile.name, text, item_id, tuple(bands))
