"""``geoseg vectorize``: a class mask to polygons (GeoPackage, GeoJSON, FlatGeobuf, GeoParquet)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from geoseg.cli.console import progress_bar, say
from geoseg.cli.options import (
    F,
    apply_options,
    choice_option,
    float_option,
    int_option,
    overwrite_option,
    path_option,
)
from geoseg.errors import RasterFormatError
from geoseg.vectorize.options import CONNECTIVITIES, LAYOUTS, VectorizeOptions

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.classes import ClassTable
    from geoseg.vectorize.engine import VectorizeResult


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


_vector_options = [
    choice_option(
        "--layout",
        list(LAYOUTS),
        "single",
        help="One layer, or one layer per class (GeoPackage).",
    ),
    click.option(
        "--connectivity",
        default=str(CONNECTIVITIES[0]),
        show_default=True,
        type=click.Choice([str(c) for c in CONNECTIVITIES]),
        callback=lambda c, p, v: int(v),
        help="8: pixels touching at a corner join one polygon.",
    ),
    int_option(
        "--sieve",
        minimum=1,
        metavar="PIXELS",
        help="Merge regions smaller than PIXELS into their largest neighbour first.",
    ),
    float_option(
        "--min-area", minimum=0, metavar="M2", help="Drop polygons smaller than M2 square metres."
    ),
    float_option(
        "--fill-holes", minimum=0, metavar="M2", help="Fill holes smaller than M2 square metres."
    ),
    click.option(
        "--simplify",
        metavar="TOL",
        help="Simplify, keeping shared boundaries shared: map units, or pixels as '1.5px'.",
    ),
    click.option(
        "--regularize", is_flag=True, help="Square up footprints of the class named building(s)."
    ),
    click.option(
        "--regularize-class",
        metavar="IDS",
        help="Square up these classes instead (ids or names, comma-separated).",
    ),
    click.option(
        "--exclude",
        metavar="IDS",
        help="Classes without polygons (ids or names) [default: background].",
    ),
    click.option("--keep-all", is_flag=True, help="Polygons for every class, background too."),
    click.option(
        "--keep-crs",
        is_flag=True,
        help="GeoJSON: keep the mask's CRS (non-standard) instead of EPSG:4326.",
    ),
    int_option("--block-size", 2048, minimum=64, help="Block edge in pixels."),
    int_option("--vector-workers", minimum=0, help="Worker threads [default: all cores]."),
]


def vector_options(f: F) -> F:
    """The clean-up and format options, shared with ``geoseg predict --vector``."""
    return apply_options(f, _vector_options)


def vector_options_of(params: dict) -> VectorizeOptions:
    """The :class:`~geoseg.vectorize.options.VectorizeOptions` the shared options name (removed
    from the command's keyword arguments); a value the library refuses is a usage error."""
    regularize: bool | list[str] = params.pop("regularize")
    chosen = params.pop("regularize_class")
    if chosen:
        regularize = _names(chosen) or []
    exclude = params.pop("exclude")
    values = {
        "layout": params.pop("layout"),
        "connectivity": params.pop("connectivity"),
        "sieve": params.pop("sieve"),
        "min_area": params.pop("min_area"),
        "fill_holes": params.pop("fill_holes"),
        "simplify": params.pop("simplify"),
        "regularize": regularize,
        "exclude": () if params.pop("keep_all") else _names(exclude),
        "keep_crs": params.pop("keep_crs"),
        "block_size": params.pop("block_size"),
        "workers": params.pop("vector_workers"),
    }
    try:
        return VectorizeOptions.parse(values)
    except RasterFormatError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(short_help="Turn a class mask into polygons.")
@click.argument("mask", metavar="MASK")
@click.argument("dst", type=click.Path(dir_okay=False), metavar="DST")
@path_option(
    "--confidence",
    help="Confidence or probability raster of the same prediction: adds mean_confidence.",
)
@path_option(
    "--classes", "classes_from", help="Take class names and colours from this checkpoint or mask."
)
@vector_options
@click.option(
    "--scheduler",
    metavar="local[:N]|tcp://HOST:PORT",
    help="Polygonize the blocks on Dask workers (seams still merge here).",
)
@overwrite_option
@click.pass_context
def vectorize(
    ctx: click.Context,
    mask: str,
    dst: str,
    confidence: str | None,
    classes_from: str | None,
    overwrite: bool,
    scheduler: str | None,
    **params: object,
) -> None:
    """Polygons of the classes in MASK (a class-mask GeoTIFF, e.g. from `geoseg predict`) into DST.

    The format follows DST's extension: .gpkg (with a QGIS style), .geojson (EPSG:4326), .fgb or
    .parquet (GeoParquet). Every polygon has class_id, class_name, area_m2 and perimeter_m.
    """
    from functools import partial

    from geoseg.vectorize import vectorize_raster

    classes = _classes_from(classes_from) if classes_from else None
    vopts = vector_options_of(params)
    run: Callable[..., VectorizeResult] = vectorize_raster
    if scheduler is not None or dst.startswith("s3://"):
        from geoseg.cli.console import quiet_dask
        from geoseg.distributed.vectorize import vectorize_on_cluster

        if scheduler is not None:
            quiet_dask(ctx)
        run = partial(vectorize_on_cluster, scheduler=scheduler)
    with progress_bar(ctx, "block", postfix=lambda done, total, n: f"{n} polygons") as step:
        result = run(
            mask,
            dst,
            vopts,
            classes=classes,
            confidence=confidence,
            overwrite=overwrite,
            progress=step,
        )
    say(
        ctx,
        f"{result.path}: {result.features} polygons in {len(result.layers)} layer(s) "
        f"({result.seconds:.1f} s, {result.features_per_second:,.0f} polygons/s), CRS "
        f"{result.crs or 'none'}",
    )


def _classes_from(path: str) -> ClassTable:
    """A class table from a checkpoint (config only, no weights) or another mask."""
    from geoseg.errors import RasterFormatError

    if path.endswith(".safetensors") or not path.lower().endswith((".tif", ".tiff")):
        from geoseg.models.config import read_config

        return read_config(path).classes
    from geoseg.classes import classes_of
    from geoseg.io.open import open_raster

    with open_raster(path) as ds:
        table = classes_of(ds)
    if table is None:
        raise RasterFormatError(
            f"{path}: expected class names (a CLASS_NAMES tag) or a colour table, found neither"
        )
    return table
