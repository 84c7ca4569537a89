"""The provenance of a prediction request, built once at the door (``predict_raster``,
``predict_many``, the Dask block path, the CLI) and written into every output."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from geoseg.inference.options import PredictOptions
from geoseg.inference.tiles import checked_tiling, tiling_of
from geoseg.models.config import ModelConfig
from geoseg.models.identity import ModelIdentity
from geoseg.models.resolve import ModelRef, model_config
from geoseg.provenance import Provenance

__all__ = ["pixel_options", "request_provenance", "run_provenance"]


def pixel_options(options: PredictOptions, config: ModelConfig) -> dict[str, Any]:
    """The options that change pixels, as a run of ``config``'s model uses them (the tile size and
    overlap resolved against the checkpoint's, so ``None`` and the checkpoint's own value are the
    same request). Batch size, device, reading threads and strictness change no pixel."""
    tile = options.tile_size_for(config)
    overlap = checked_tiling(
        tile,
        config.overlap if options.overlap is None else options.overlap,
        config.output_stride,
    )
    # the kernel the run uses: the options' own, else the model's tiling's (gaussian, or core for
    # a model exported for QGIS Deepness)
    blend = options.blend if options.blend is not None else tiling_of(config).blend
    return {
        "tile_size": tile,
        "overlap": overlap,
        "blend": blend if isinstance(blend, str) else getattr(blend, "__qualname__", str(blend)),
        "precision": options.precision,
        "tta": options.tta,
        "bands": list(options.bands) if options.bands is not None else None,
        "scale": list(options.scale) if isinstance(options.scale, tuple) else options.scale,
        "resample_to_model": options.resample_to_model,
    }


def _where(src: str | os.PathLike[str]) -> str:
    """An input as provenance records it: URLs as they are, local paths absolute (so a rerun from
    another folder names the same input)."""
    text = str(src)
    return text if "://" in text or text.startswith("/vsi") else os.path.abspath(text)


def request_provenance(
    src: str | os.PathLike[str],
    model: ModelRef,
    options: PredictOptions,
    *,
    config: ModelConfig | None = None,
    identity: ModelIdentity | None = None,
    item: str | None = None,
    created: str | None = None,
) -> Provenance:
    """The :class:`~geoseg.provenance.Provenance` of predicting ``src`` with ``model`` and
    ``options``.

    Args:
        src: the input path or URL (a STAC item's URL for a STAC input).
        model: any model reference.
        options: the prediction options.
        config: the model's config, when already known (read from ``model`` otherwise).
        identity: the model's name and digest, when already known (a run over many inputs
            takes them once).
        item: the STAC item id of the input (read from ``src`` when it is a STAC item and this is
            None).
        created: the UTC time to record (default: now).
    """
    from geoseg.io.stac import is_stac, stac_item_id
    from geoseg.models.identity import model_identity

    identity = identity if identity is not None else model_identity(model)
    cfg = config if config is not None else model_config(model)
    if item is None and is_stac(src):
        item = stac_item_id(src)
    extra = {} if created is None else {"created": created}
    return Provenance(
        model=identity.label,
        model_digest=identity.digest,
        options=pixel_options(options, cfg),
        inputs=(_where(src),),
        item=item,
        **extra,
    )


def run_provenance(
    model: ModelRef,
    options: PredictOptions,
    inputs: Sequence[str | os.PathLike[str]],
    *,
    config: ModelConfig | None = None,
) -> Provenance:
    """The provenance of a run over several inputs with one model and options (``evaluate``,
    ``diagnose``): what their run folder records."""
    from geoseg.models.identity import model_identity

    identity = model_identity(model)
    cfg = config if config is not None else model_config(model)
    return Provenance(
        model=identity.label,
        model_digest=identity.digest,
        options=pixel_options(options, cfg),
        inputs=tuple(_where(i) for i in inputs),
    )
