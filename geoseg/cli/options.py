"""Options shared by several commands, and factories for the common kinds of option."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from geoseg.inference.blending import BLEND_KERNELS
from geoseg.inference.options import PRECISIONS, TTA_MODES

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.inference.options import PredictOptions

F = TypeVar("F", bound=Callable[..., Any])


def apply_options(f: F, options: Sequence[Callable[[Any], Any]]) -> F:
    """``f`` decorated with ``options``, which --help then lists in this order."""
    for option in reversed(options):
        f = option(f)
    return f


def _range_option(
    name: str, kind: click.ParamType, default: float | None, help: str, attrs: dict[str, Any]
) -> Callable[[F], F]:
    shown: dict[str, Any] = {} if default is None else {"default": default, "show_default": True}
    return click.option(name, type=kind, help=help, **shown, **attrs)


def int_option(
    name: str,
    default: int | None = None,
    *,
    minimum: int,
    maximum: int | None = None,
    help: str,
    **attrs: Any,
) -> Callable[[F], F]:
    """An integer option from ``minimum`` (to ``maximum``); --help shows the default if any."""
    return _range_option(name, click.IntRange(minimum, maximum), default, help, attrs)


def float_option(
    name: str,
    default: float | None = None,
    *,
    minimum: float,
    min_open: bool = False,
    help: str,
    **attrs: Any,
) -> Callable[[F], F]:
    """A number option from ``minimum`` (above it with ``min_open``); --help shows the default if
    any."""
    return _range_option(name, click.FloatRange(minimum, min_open=min_open), default, help, attrs)


def text_option(name: str, default: str, *, help: str, **attrs: Any) -> Callable[[F], F]:
    """A text option whose --help shows ``default``."""
    return click.option(name, default=default, show_default=True, help=help, **attrs)


def choice_option(
    name: str, choices: Sequence[str], default: str, *, help: str | None = None, **attrs: Any
) -> Callable[[F], F]:
    """An option taking one of ``choices``; --help lists them and shows ``default``."""
    return click.option(
        name, default=default, show_default=True, type=click.Choice(choices), help=help, **attrs
    )


def path_option(
    *param_decls: str,
    help: str,
    file_okay: bool = True,
    dir_okay: bool = True,
    path_type: type[Any] | None = None,
    **attrs: Any,
) -> Callable[[F], F]:
    """An option naming a path (or URL); click checks only the kind of an existing one."""
    kind = click.Path(file_okay=file_okay, dir_okay=dir_okay, path_type=path_type)
    return click.option(*param_decls, type=kind, help=help, **attrs)


def file_option(*param_decls: str, help: str, **attrs: Any) -> Callable[[F], F]:
    """An option naming a file, typically one to write."""
    return path_option(*param_decls, help=help, dir_okay=False, **attrs)


def folder_option(*param_decls: str, help: str, **attrs: Any) -> Callable[[F], F]:
    """An option naming a folder."""
    return path_option(*param_decls, help=help, file_okay=False, **attrs)


def model_option(help: str) -> Callable[[F], F]:
    """``--model``, read as ``model_path``: a checkpoint or a bundled model's name."""
    return path_option("--model", "model_path", help=help)


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace outputs that already exist."
)
device_option = text_option("--device", "auto", help="auto, cpu, cuda or cuda:N.")


def parse_bands(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | tuple[str, ...] | None:
    """``"3,2,1"`` -> ``(3, 2, 1)``: 1-based band indexes in the order the model wants;
    ``"red,green,nir"`` -> band names (a STAC item's assets, a raster's band descriptions)."""
    if value is None:
        return None
    from geoseg.errors import TilingError
    from geoseg.inference.options import parse_bands as parse

    try:
        return parse(value)
    except TilingError:
        raise click.BadParameter(
            f"expected band numbers such as 3,2,1 (they start at 1) or band names such as "
            f"red,green,nir, got {value!r}"
        ) from None


bands_option = click.option(
    "--bands",
    callback=parse_bands,
    metavar="B1,B2,..",
    help="Input bands, in the model's order: 1-based numbers (3,2,1), or names (red,green,nir) "
    "that pick a STAC item's assets or a raster's bands by description.",
)

PRECISION_METAVAR = "|".join(PRECISIONS)  # the library's own choices

# The options of PredictOptions, in the order --help shows them. Choices are checked by the
# library's own parser when the command runs, so a kernel added with register_blend can be chosen.
PREDICT_OPTION_NAMES = (
    "tile_size",
    "overlap",
    "blend",
    "batch_size",
    "device",
    "precision",
    "tta",
    "bands",
    "workers",
    "scale",
    "resample_to_model",
    "strict",
)

_predict_options = [
    int_option("--tile-size", minimum=1, help="Tile edge in pixels [default: the model's]."),
    click.option(
        "--overlap",
        metavar="PX|FRACTION",
        help="Overlap in pixels (128) or as a fraction of the tile (0.25) [default: the model's].",
    ),
    click.option(
        "--blend",
        metavar="KERNEL",
        help=f"Weight kernel for overlaps: {', '.join(BLEND_KERNELS)}, or one added with "
        "register_blend [default: the model's: gaussian; core for a model exported for QGIS "
        "Deepness].",
    ),
    int_option(
        "--batch-size", minimum=1, help="Tiles per forward pass [default: 2 on CPU, 8 on CUDA]."
    ),
    device_option,
    text_option(
        "--precision",
        "auto",
        metavar=PRECISION_METAVAR,
        help="auto: on CPU the checkpoint's calibrated int8 variant when it agrees with fp32 on "
        ">= 99% of held-out pixels (geoseg quantize), else the fastest precision whose classes "
        "agree with fp32 on >= 99.5% of a tile's pixels.",
    ),
    text_option("--tta", "none", metavar="|".join(TTA_MODES), help="Test-time augmentation."),
    bands_option,
    int_option("--workers", 2, minimum=0, help="Threads reading tiles ahead."),
    click.option(
        "--scale",
        metavar="LOW,HIGH|auto",
        help="Map input values LOW..HIGH onto the model's training range (e.g. 0,10000 for "
        "reflectance), or auto: a 2-98% stretch per band.",
    ),
    click.option(
        "--resample-to-model",
        is_flag=True,
        default=None,
        help="Predict at the model's pixel size, then resample the outputs back onto the input "
        "grid.",
    ),
    click.option(
        "--strict",
        is_flag=True,
        default=None,
        help="Refuse input unlike the training data (dtype, value range, pixel size) instead of "
        "warning.",
    ),
]


def predict_options(f: F) -> F:
    """Add the prediction options (tile size, overlap, blend, batch, device, precision, TTA, bands,
    workers, input scaling, resampling, strictness) to a command; read them back with
    :func:`pop_predict_options`."""
    return apply_options(f, _predict_options)


def pop_predict_options(params: dict[str, Any]) -> PredictOptions:
    """Remove the prediction options from a command's keyword arguments and parse them into a
    :class:`~geoseg.inference.PredictOptions` with the library's parser.

    Raises:
        click.BadParameter: a value the library refuses (its message says why and what to use).
    """
    from geoseg.errors import TilingError
    from geoseg.inference.options import PredictOptions

    values = {name: params.pop(name) for name in PREDICT_OPTION_NAMES if name in params}
    try:
        return PredictOptions.parse(values)
    except TilingError as exc:
        raise click.BadParameter(str(exc)) from None


def is_quiet(ctx: click.Context) -> bool:
    """Whether the group's -q was given."""
    root = ctx.find_root()
    return bool((root.obj or {}).get("quiet"))


_labelled_data_options = [
    click.argument("checkpoint", required=False, metavar="[CKPT]"),
    click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]..."),
    click.option(
        "-c",
        "--config",
        help="Training config naming the dataset and its split (or a bundled name).",
    ),
    choice_option("--split", ["test", "val"], "test", help="Which held-out split."),
    folder_option("--images", help="Folder of images (instead of --config)."),
    folder_option("--labels", help="Folder of label rasters named like the images."),
]


def labelled_data_options(f: F) -> F:
    """``[CKPT] [KEY=VALUE]... -c CONFIG --split | --images DIR --labels DIR``: a model and the
    images with labels it is scored on; read them back with :func:`pop_labelled_data`."""
    return apply_options(f, _labelled_data_options)


def pop_labelled_data(params: dict[str, Any], what: str) -> tuple[str, list[Any]]:
    """The checkpoint (default: the bundled model) and the image/label pairs named by the
    :func:`labelled_data_options` in a command's keyword arguments (which are removed).

    Raises:
        click.UsageError: ``--images`` without ``--labels`` or the reverse.
        ConfigError: neither a config nor folders (``what`` names the command's job).
    """
    from geoseg.errors import ConfigError
    from geoseg.evaluation.evaluate import pairs_from_config, pairs_from_dirs
    from geoseg.models.default import default_model

    checkpoint, overrides = params.pop("checkpoint"), tuple(params.pop("overrides"))
    config, split, images, labels = (params.pop(k) for k in ("config", "split", "images", "labels"))
    if checkpoint is not None and "=" in checkpoint:  # an override given where CKPT goes
        overrides, checkpoint = (checkpoint, *overrides), None
    if (images is None) != (labels is None):
        raise click.UsageError("--images and --labels go together")
    if images is not None and labels is not None:
        pairs = list(pairs_from_dirs(images, labels))
    elif config is not None:
        from geoseg.training.config import load_config, resolve_config

        pairs = list(pairs_from_config(load_config(resolve_config(config), list(overrides)), split))
    else:
        raise ConfigError(
            f"nothing to {what}: give --config CONFIG (with data.root=...) or --images DIR "
            "--labels DIR"
        )
    return checkpoint or str(default_model()), pairs
