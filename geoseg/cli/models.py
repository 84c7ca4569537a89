"""``geoseg models``: list architectures and encoders, or describe a checkpoint."""

from __future__ import annotations

import json

import click


@click.command(short_help="List architectures and encoders, or describe a checkpoint.")
@click.argument("checkpoint", required=False, type=click.Path())
@click.option("--encoders", is_flag=True, help="Also list every encoder name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(checkpoint: str | None, encoders: bool, as_json: bool) -> None:
    """Without CHECKPOINT, list the registry; with it, print the checkpoint's config."""
    if checkpoint:
        from geoseg.models import read_config

        cfg = read_config(checkpoint)
        if as_json:
            click.echo(cfg.to_json())
            return
        click.echo(f"{checkpoint}: {cfg.architecture} / {cfg.encoder}, {cfg.in_channels} band(s) "
                   f"{list(cfg.band_names) or ''}, tile {cfg.tile_size} overlap {cfg.overlap}, geoseg {cfg.geoseg_version}")
        for c in cfg.classes:
            click.echo(f"  {c.id:>3}  {c.hex()}  {c.name}")
        if cfg.metrics:
            click.echo("  metrics: " + json.dumps(cfg.metrics))
        return
    from geoseg.models import list_architectures, list_encoders

    names = list_encoders()
    if as_json:
        click.echo(json.dumps({"architectures": list_architectures(), "encoders": names}, indent=2))
        return
    click.echo("architectures: " + ", ".join(list_architectures()))
    if encoders:
        click.echo("encoders: " + ", ".join(names))
    else:
        picks = [e for e in ("vgg11", "resnet18", "resnet34", "resnet50", "efficientnet-b0", "mobilenet_v2") if e in names]
        click.echo(f"encoders: {', '.join(picks)} ... ({len(names)} in all; --encoders lists them)")
