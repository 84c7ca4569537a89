"""The COG writers of one prediction: the class mask, and optional probabilities and confidence.

Every door that publishes a prediction (``predict_raster``, the resampled path, the Dask block
assembly) writes through these, so the outputs carry the same styling, nodata and tags.
"""

from __future__ import annotations

import os
from typing import Any

from geoseg.classes import MASK_NODATA
from geoseg.io.writer import COGWriter
from geoseg.models.config import ModelConfig
from geoseg.provenance import Provenance

__all__ = ["CONFIDENCE_NODATA", "output_writers"]

CONFIDENCE_NODATA = 0  # confidence where the input has no data; valid pixels are 1..255


def output_writers(
    cfg: ModelConfig,
    geo: dict[str, Any],
    dst: str | os.PathLike[str],
    probabilities: str | os.PathLike[str] | None,
    confidence: str | os.PathLike[str] | None,
    *,
    overwrite: bool,
    provenance: Provenance | None = None,
) -> list[tuple[COGWriter, str]]:
    """The COG writers of one prediction, each with the :class:`Finished` attribute it writes.

    Every output is tagged with the model's architecture (``GEOSEG_MODEL``) and, when given, the
    ``provenance`` of the request (``GEOSEG_VERSION``, ``GEOSEG_MODEL_NAME``, ``_DIGEST``,
    ``GEOSEG_OPTIONS``, ``GEOSEG_INPUT``, ``GEOSEG_STAC_ITEM``, ``GEOSEG_CREATED``)."""
    tags = {
        "GEOSEG_MODEL": f"{cfg.architecture}-{cfg.encoder}",
        "GEOSEG_VERSION": cfg.geoseg_version,
    }
    if provenance is not None:
        tags.update(provenance.to_tags())
    outputs_of: list[tuple[COGWriter, str]] = [
        (
            COGWriter(
                dst,
                count=1,
                dtype="uint8",
                nodata=MASK_NODATA,
                classes=cfg.classes,
                resampling="mode",
                descriptions=["class"],
                tags=tags,
                overwrite=overwrite,
                **geo,
            ),
            "classes",
        )
    ]
    if probabilities is not None:
        outputs_of.append(
            (
                COGWriter(
                    probabilities,
                    count=cfg.num_classes,
                    dtype="uint8",
                    nodata=None,
                    resampling="average",
                    descriptions=cfg.classes.names,
                    tags=tags,
                    overwrite=overwrite,
                    mask=True,
                    **geo,
                ),
                "probabilities",
            )
        )
    if confidence is not None:
        # the winning class's probability is at least 1/classes, so 0 is free to mean "no data": a
        # nodata value QGIS 3.22 reads without complaint (it shows an internal mask as an extra
        # alpha band)
        outputs_of.append(
            (
                COGWriter(
                    confidence,
                    count=1,
                    dtype="uint8",
                    nodata=CONFIDENCE_NODATA,
                    resampling="average",
                    descriptions=["confidence"],
                    tags=tags,
                    overwrite=overwrite,
                    **geo,
                ),
                "confidence",
            )
        )
    return outputs_of
