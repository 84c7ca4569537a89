"""``geoseg train``: train a model from a YAML config (plus KEY=VALUE overrides)."""

from __future__ import annotations

import click

from geoseg.cli.console import say
from geoseg.cli.options import int_option, is_quiet


@click.command(short_help="Train a model from a config.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option(
    "-c", "--config", "config", help="YAML config file, or a bundled name (e.g. dubai-default)."
)
@click.option("-o", "--output", help="Run folder [default: the config's output].")
@click.option(
    "--resume",
    "resume",
    is_flag=True,
    help="Continue the run in the output folder from its last checkpoint.",
)
@click.option("--overwrite", is_flag=True, help="Delete an existing run folder first.")
@click.option(
    "--logger", help="Comma-separated: csv, tensorboard, wandb (offline without an API key), none."
)
@click.option(
    "--encoder-weights",
    help="Encoder weights: packaged ImageNet weights by name (efficientnet-lite0-imagenet, "
    "or lite1, lite2 in its place; offline; see geoseg models), a local .safetensors/.pth file, "
    "or imagenet (downloads).",
)
@int_option("--epochs", minimum=1, help="Override epochs.")
@int_option("--max-steps", minimum=1, help="Stop after this many optimizer steps.")
@click.option(
    "--accelerator", type=click.Choice(["auto", "cpu", "gpu"]), help="Override the device."
)
@click.pass_context
def train(
    ctx: click.Context,
    overrides: tuple[str, ...],
    config: str | None,
    output: str | None,
    resume: bool,
    overwrite: bool,
    logger: str | None,
    encoder_weights: str | None,
    epochs: int | None,
    max_steps: int | None,
    accelerator: str | None,
) -> None:
    """Train a segmentation model and export the best checkpoint.

    OVERRIDES set config keys, e.g. data.root=/data/dubai optim.lr=0.001 model.encoder=resnet18.
    With --resume and no --config, the run folder's saved config is used.
    """
    from pathlib import Path

    from geoseg.training.config import load_config, resolve_config
    from geoseg.training.train import train as run

    extra = list(overrides)
    if output:
        extra.append(f"output={output}")
    if logger:
        extra.append(f"logger=[{logger}]")
    if encoder_weights:
        extra.append(f"model.encoder_weights={encoder_weights}")
    if epochs:
        extra.append(f"epochs={epochs}")
    if accelerator:
        extra.append(f"accelerator={accelerator}")
    path = resolve_config(config) if config else None
    if path is None and resume and output:
        path = Path(output) / "config.yaml"
    cfg = load_config(path, extra)
    result = run(
        cfg, resume=resume, overwrite=overwrite, progress=not is_quiet(ctx), max_steps=max_steps
    )
    miou = result.metrics.get("validation", {}).get("miou")
    say(
        ctx,
        f"{'interrupted' if result.interrupted else 'trained'} {result.epochs} epoch(s): "
        f"{result.checkpoint}"
        + (f" (validation mIoU {miou:.3f})" if isinstance(miou, float) else ""),
    )
    say(ctx, f"logs and curves: {result.run_dir}")
