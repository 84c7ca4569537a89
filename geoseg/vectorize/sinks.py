"""Streaming polygon writers by file extension: GeoPackage, GeoJSON, FlatGeobuf, GeoParquet.

Batches are written as they come (one open dataset, no full table in memory) to a temporary name
beside the destination, renamed on success and removed on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from rasterio.crs import CRS

from geoseg.classes import ClassTable
from geoseg.errors import GeosegWarning, RasterFormatError, WriteError
from geoseg.io.atomic import atomic_output, temporary_name
from geoseg.io.writer import check_destination
from geoseg.vectorize.finish import FeatureBatch

__all__ = ["FORMATS", "format_of", "layer_qml", "write_features"]

FORMATS = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".fgb": "FlatGeobuf",
    ".parquet": "GeoParquet",
}


def format_of(dst: str | os.PathLike[str]) -> str:
    """The output format for ``dst``'s extension, or a clear error listing the choices."""
    ext = Path(dst).suffix.lower()
    if ext not in FORMATS:
        raise RasterFormatError(
            f"{dst}: expected a vector file ending in {', '.join(sorted(FORMATS))}, found "
            f"{ext or 'no extension'}; e.g. buildings.gpkg"
        )
    return FORMATS[ext]


def _schema(confidence: bool) -> Any:
    import pyarrow as pa

    fields = [
        pa.field("geometry", pa.binary(), metadata={"ARROW:extension:name": "geoarrow.wkb"}),
        pa.field("class_id", pa.int32()),
        pa.field("class_name", pa.string()),
        pa.field("area_m2", pa.float64()),
        pa.field("perimeter_m", pa.float64()),
    ]
    if confidence:
        fields.append(pa.field("mean_confidence", pa.float64()))
    return pa.schema(fields)


def _record_batches(
    batches: Iterable[FeatureBatch], schema: Any, counter: list[int]
) -> Iterator[Any]:
    import pyarrow as pa

    for b in batches:
        if not len(b):
            continue
        columns = [
            pa.array(b.to_wkb(), type=pa.binary()),
            pa.array(b.class_id.astype(np.int32)),
            pa.array(b.class_name),
            pa.array(b.area_m2),
            pa.array(b.perimeter_m),
        ]
        if "mean_confidence" in schema.names:
            columns.append(pa.array(b.mean_confidence))
        counter[0] += len(b)
        yield pa.record_batch(columns, schema=schema)


def layer_qml(classes: ClassTable, class_ids: Iterable[int]) -> str:
    """A QGIS style: categorized by ``class_id``, each class with its name and colour."""
    from geoseg.vectorize.source import class_info

    ids = sorted({int(i) for i in class_ids})
    cats, syms = [], []
    for k, cid in enumerate(ids):
        info = class_info(classes, cid)
        r, g, b = info.color
        cats.append(
            f'<category value="{cid}" label="{escape(info.name)}" symbol="{k}" render="true"/>'
        )
        syms.append(
            f'<symbol type="fill" name="{k}" alpha="0.6" clip_to_extent="1" force_rhr="0">'
            f'<layer class="SimpleFill" enabled="1" pass="0" locked="0"><Option type="Map">'
            f'<Option name="color" value="{r},{g},{b},255" type="QString"/>'
            f'<Option name="outline_color" value="{r},{g},{b},255" type="QString"/>'
            f'<Option name="outline_style" value="solid" type="QString"/>'
            f'<Option name="outline_width" value="0.3" type="QString"/>'
            f'<Option name="style" value="solid" type="QString"/></Option>'
            f'<prop k="color" v="{r},{g},{b},255"/><prop k="outline_color" v="{r},{g},{b},255"/>'
            f"</layer></symbol>"
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28" styleCategories="Symbology|Labeling">\n'
        '<renderer-v2 type="categorizedSymbol" attr="class_id" symbollevels="0" '
        'enableorderby="0" forceraster="0">'
        f"<categories>{''.join(cats)}</categories><symbols>{''.join(syms)}</symbols></renderer-v2>"
        "\n"
        "<layerGeometryType>2</layerGeometryType>\n</qgis>\n"
    )


# GeoPackage 1.2: what GDAL 3.6 (Debian 12, QGIS 3.22 LTR) reads without "non-conformant" warnings;
# GDAL >= 3.8 writes 1.4 by default, with triggers the older readers reject.
GPKG_OPTIONS = {"VERSION": "1.2"}
STYLED_SIDECAR = (
    "FlatGeobuf",
    "GeoJSON",
    "GeoParquet",
)  # formats without a style inside: QGIS reads NAME.qml


def _write_qml_sidecar(path: Path, qml: str) -> None:
    """The style beside a FlatGeobuf/GeoJSON/GeoParquet file, unless a raster's style holds that
    name."""
    side = path.with_suffix(".qml")
    if side.exists() and "<rasterrenderer" in side.read_text(encoding="utf-8", errors="replace"):
        warnings.warn(
            f"{side} is the style of a raster of the same name; {path.name} gets no .qml side-car. "
            "Give the vector another name to have it styled",
            GeosegWarning,
            stacklevel=3,
        )
        return
    with atomic_output(side) as tmp:
        tmp.write_text(qml, encoding="utf-8")


def store_gpkg_style(path: Path, layer: str, qml: str) -> None:
    """Put a default QGIS style in the GeoPackage (the ``layer_styles`` table QGIS reads)."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        geom_col = db.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name=?", (layer,)
        ).fetchone()[0]
        db.execute(
            "CREATE TABLE IF NOT EXISTS layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "f_table_catalog TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256), "
            "f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT, "
            "useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), "
            # ISO-8601, as QGIS writes it
            "update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
        )
        db.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description) "
            "VALUES ('layer_styles', 'attributes', 'layer_styles', 'QGIS layer styles')"
        )
        db.execute(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
            "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, owner, "
            "update_time) VALUES ('', '', ?, ?, ?, ?, '', 1, 'geoseg classes', '', "
            "strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
            (layer, geom_col, layer, qml),
        )


def _geoparquet(
    path: Path,
    batches: Iterator[Any],
    schema: Any,
    crs: CRS | None,
    geometry_type: str,
    metadata: Mapping[str, str] | None = None,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": [geometry_type]}
    if crs is not None:
        from pyproj import CRS as ProjCRS

        column["crs"] = ProjCRS.from_user_input(crs.to_wkt()).to_json_dict()
    else:
        column["crs"] = None
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}
    fields = [pa.field("geometry", pa.binary()), *[schema.field(n) for n in schema.names[1:]]]
    extra = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
    out_schema = pa.schema(fields, metadata={b"geo": json.dumps(geo).encode(), **extra})
    with pq.ParquetWriter(path, out_schema, compression="zstd") as writer:
        for rb in batches:
            writer.write_batch(pa.record_batch(rb.columns, schema=out_schema))


def write_features(
    dst: str | os.PathLike[str],
    batches: Iterable[FeatureBatch],
    *,
    crs: CRS | None,
    classes: ClassTable,
    geometry_type: str = "Polygon",
    layer: str | None = None,
    layout: str = "single",
    keep_crs: bool = False,
    confidence: bool = False,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> tuple[int, list[str]]:
    """Write polygon batches to ``dst`` (format from the extension), atomically.

    Args:
        layout: ``single`` (one layer) or ``per-class`` (one layer per class; GeoPackage only).
        keep_crs: GeoJSON only: keep the native CRS (non-standard) instead of EPSG:4326.
        metadata: text written as each layer's metadata (GeoPackage, FlatGeobuf) or the file's
            (GeoParquet): how the polygons were made. GeoJSON holds none.

    Returns:
        ``(features written, layer names)``.
    """

    path = check_destination(dst, overwrite=overwrite)
    fmt = format_of(path)
    if layout not in ("single", "per-class"):
        raise RasterFormatError(f"layout must be 'single' or 'per-class', got {layout!r}")
    if layout == "per-class" and fmt != "GPKG":
        raise RasterFormatError(
            f"{dst}: one layer per class needs a GeoPackage (.gpkg); {fmt} holds one layer. "
            "Use a .gpkg name or --layout single."
        )
    if fmt == "GeoJSON" and crs is None and not keep_crs:
        raise RasterFormatError(
            f"{dst}: GeoJSON is in EPSG:4326 (RFC 7946), but the mask has no CRS to reproject "
            "from. Assign the mask a CRS, write .gpkg/.fgb instead, or pass --keep-crs."
        )
    layer = layer or path.stem
    schema = _schema(confidence)
    counter = [0]
    seen: set[int] = set()

    failure: list[BaseException] = []

    def tracked(items: Iterable[FeatureBatch]) -> Iterator[FeatureBatch]:
        try:
            for b in items:
                seen.update(int(v) for v in np.unique(b.class_id))
                yield b
        except (
            BaseException
        ) as exc:  # GDAL reports only "error while accessing batch": keep the cause
            failure.append(exc)
            raise

    wkt = crs.to_wkt() if crs is not None else None

    def guarded(items: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from items
        except (
            BaseException
        ) as exc:  # Ctrl-C arrives wherever the main thread is: keep it, not GDAL's echo
            if not failure:
                failure.append(exc)
            raise

    stream = guarded(_record_batches(tracked(batches), schema, counter))
    spill = temporary_name(path, "-all").with_suffix(".gpkg")
    interrupted: list[bool] = []
    with _noting_interrupts(interrupted):
        return _write_features(
            path,
            dst,
            fmt,
            layer,
            layout,
            stream,
            schema,
            geometry_type,
            wkt,
            crs,
            classes,
            keep_crs,
            spill,
            seen,
            counter,
            failure,
            interrupted,
            metadata=metadata,
        )


@contextlib.contextmanager
def _noting_interrupts(interrupted: list[bool]) -> Iterator[None]:
    """Note Ctrl-C or SIGTERM while GDAL pulls batches: Arrow turns the KeyboardInterrupt their
    handlers raise into "error while accessing batch"."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def noting(handler: Any) -> Any:
        def note(signum: int, frame: Any) -> None:
            interrupted.append(True)
            handler(signum, frame)

        return note

    for sig, handler in old.items():
        if callable(handler):  # a Python handler (Ctrl-C's, the command line's SIGTERM)
            signal.signal(sig, noting(handler))
    try:
        yield
    finally:
        for sig, handler in old.items():
            if callable(handler):
                signal.signal(sig, handler)


def _write_features(
    path: Path,
    dst: Any,
    fmt: str,
    layer: str,
    layout: str,
    stream: Iterator[Any],
    schema: Any,
    geometry_type: str,
    wkt: str | None,
    crs: CRS | None,
    classes: ClassTable,
    keep_crs: bool,
    spill: Path,
    seen: set[int],
    counter: list[int],
    failure: list[BaseException],
    interrupted: list[bool],
    metadata: Mapping[str, str] | None = None,
) -> tuple[int, list[str]]:
    import pyarrow as pa
    import pyogrio

    try:
        with atomic_output(path) as tmp:
            with warnings.catch_warnings():
                if (
                    crs is None
                ):  # the mask's own NoCRSWarning has told the user; pyogrio would say it again
                    warnings.filterwarnings(
                        "ignore", message="'crs' was not provided", category=UserWarning
                    )
                if fmt == "GeoParquet":
                    _geoparquet(tmp, stream, schema, crs, geometry_type, metadata)
                    layers = [(layer, sorted(seen))]
                elif layout == "per-class":
                    pyogrio.write_arrow(
                        pa.RecordBatchReader.from_batches(schema, stream),
                        spill,
                        layer=layer,
                        driver="GPKG",
                        geometry_name="geometry",
                        geometry_type=geometry_type,
                        crs=wkt,
                    )
                    layers = _split_per_class(
                        spill,
                        tmp,
                        layer,
                        classes,
                        sorted(seen),
                        schema,
                        geometry_type,
                        wkt,
                        metadata,
                    )
                else:
                    options = {"RFC7946": "NO" if keep_crs else "YES"} if fmt == "GeoJSON" else {}
                    pyogrio.write_arrow(
                        pa.RecordBatchReader.from_batches(schema, stream),
                        tmp,
                        layer=layer,
                        driver=fmt,
                        geometry_name="geometry",
                        geometry_type=geometry_type,
                        crs=wkt,
                        layer_metadata=None if fmt == "GeoJSON" else metadata,
                        layer_options=options,
                        dataset_options=GPKG_OPTIONS if fmt == "GPKG" else {},
                    )
                    layers = [(layer, sorted(seen))]
            if fmt == "GPKG":
                for name, ids in layers:
                    if ids or layout == "single":
                        store_gpkg_style(tmp, name, layer_qml(classes, ids or [0]))
        if fmt in STYLED_SIDECAR:
            _write_qml_sidecar(path, layer_qml(classes, layers[0][1] or [0]))
    except BaseException as exc:
        if interrupted and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        if failure and failure[0] is not exc:
            raise failure[0] from None
        if type(exc).__module__.startswith(("pyogrio", "pyarrow", "sqlite3")) or isinstance(
            exc, PermissionError
        ):
            raise WriteError(
                f"{dst}: writing failed ({exc}); nothing was written under that name"
            ) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            spill.unlink()
    return counter[0], [name for name, _ in layers]


def _split_per_class(
    spill: Path,
    tmp: Path,
    layer: str,
    classes: ClassTable,
    ids: list[int],
    schema: Any,
    geometry_type: str,
    wkt: str | None,
    metadata: Mapping[str, str] | None = None,
) -> list[tuple[str, list[int]]]:
    """Copy each class of the spilled single layer into its own layer (streamed with a filter);
    returns each layer's name and class ids."""
    import pyarrow as pa
    import pyogrio

    from geoseg.vectorize.source import class_info

    every_layer = {
        "driver": "GPKG",
        "geometry_name": "geometry",
        "geometry_type": geometry_type,
        "crs": wkt,
        "layer_metadata": metadata,
    }
    if not ids:  # still a valid, empty layer with the schema
        empty = pa.RecordBatchReader.from_batches(schema, iter(()))
        pyogrio.write_arrow(empty, tmp, layer=layer, dataset_options=GPKG_OPTIONS, **every_layer)
        return [(layer, [])]
    layers = []
    for k, cid in enumerate(ids):
        name = _safe_layer(class_info(classes, cid).name)
        with pyogrio.open_arrow(
            spill, layer=layer, where=f"class_id = {cid}", use_pyarrow=True
        ) as (_, reader):
            pyogrio.write_arrow(
                reader,
                tmp,
                layer=name,
                append=k > 0,
                dataset_options={} if k else GPKG_OPTIONS,
                **every_layer,
            )
        layers.append((name, [cid]))
    return layers


def _safe_layer(name: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name.strip()) or "class"
    return out if not out[0].isdigit() else f"class_{out}"
