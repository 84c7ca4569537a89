"""``geoseg info``: describe rasters."""

from __future__ import annotations

import json
from typing import Any

import click


def _format(d: dict[str, Any]) -> str:
    crs = d["crs"]
    crs_text = (
        "none"
        if crs is None
        else (f"EPSG:{crs['epsg']} ({crs['name']})" if crs["epsg"] else crs["name"])
    )
    lines = [
        f"{d['path']}",
        f"  driver       {d['driver']}",
        f"  size         {d['width']} x {d['height']} px (cols x rows), {d['count']} band(s)",
        f"  crs          {crs_text}",
        f"  resolution   {d['resolution'][0]:.6g} x {d['resolution'][1]:.6g}"
        + (f" {crs['units']}" if crs else ""),
        f"  transform    {d['transform']}" + ("  (rotated)" if d["rotated"] else ""),
    ]
    if d["bounds"]:
        lines.append(
            "  bounds       "
            + ", ".join(f"{v:.6f}" for v in d["bounds"])
            + " (left, bottom, right, top)"
        )
    if d["bounds_lonlat"]:
        lines.append("  lon/lat      " + ", ".join(f"{v:.6f}" for v in d["bounds_lonlat"]))
    if d["georeferencing"] == "gcps":
        lines.append(f"  gcps         {d['gcp_count']}")
    layout = (
        f"tiled {d['block_shape'][1]}x{d['block_shape'][0]}"
        if d["tiled"]
        else f"striped ({d['block_shape'][0]} rows per strip)"
    )
    lines.append(
        f"  layout       {layout}, {d['compression']} compression, interleave {d['interleave']}"
    )
    lines.append(f"  overviews    {d['overviews'] or 'none'}")
    lines.append("  COG          " + ("yes" if d["cog"] else "no: " + "; ".join(d["cog_problems"])))
    for b in d["bands"]:
        extras = [x for x in (b["description"], "colour table" if b["color_table"] else None) if x]
        lines.append(
            f"  band {b['index']:<3}     {b['dtype']:<8} nodata={b['nodata']} {b['color_interp']}"
            + (f" ({', '.join(extras)})" if extras else "")
        )
    if d["class_names"]:
        names = ", ".join(f"{c['id']}={c['name']}" for c in json.loads(d["class_names"]))
        lines.append(f"  classes      {names}")
    if d.get("provenance"):
        from geoseg.provenance import Provenance

        made = Provenance.from_dict(d["provenance"]).describe()
        lines += [f"  {'made by' if k == 0 else '':<12} {line}" for k, line in enumerate(made)]
    lines += [f"  warning      {w}" for w in d["warnings"]]
    return "\n".join(lines)


@click.command(short_help="Describe rasters: CRS, grid, bands, tiling, COG validity.")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (one object, or a list for several paths)."
)
def info(paths: tuple[str, ...], as_json: bool) -> None:
    """Describe each raster PATH (local file or http(s):// URL)."""
    from geoseg.io.info import describe_raster

    if not as_json:  # each description as soon as it is made: a later bad path keeps them
        for k, p in enumerate(paths):
            click.echo(("\n" if k else "") + _format(describe_raster(p)))
        return
    results = [describe_raster(p) for p in paths]  # one JSON document, whole or not at all
    for r in results:
        if r["crs"]:
            r["crs"].pop("wkt", None)
    click.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
