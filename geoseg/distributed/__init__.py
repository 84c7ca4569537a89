"""Scale-out on Dask: many rasters as one task each, one huge raster as blocks, vectorizing on a
cluster; inputs and outputs on object storage (``s3://``).

Dask is optional (``pip install 'geoseg[distributed]'``); without a scheduler everything runs in
this process. Names load lazily::

    from geoseg.distributed import predict_many
    predict_many(["tiles/*.tif"], "out/", scheduler="local:2")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.distributed.blocks import RasterDone, block_grid, predict_blocks
    from geoseg.distributed.cluster import open_client, parse_scheduler
    from geoseg.distributed.inputs import OutputSet, expand_inputs, output_set
    from geoseg.distributed.many import ManyResult, predict_many
    from geoseg.distributed.vectorize import vectorize_on_cluster

__all__ = [
    "ManyResult",
    "OutputSet",
    "RasterDone",
    "block_grid",
    "expand_inputs",
    "open_client",
    "output_set",
    "parse_scheduler",
    "predict_blocks",
    "predict_many",
    "vectorize_on_cluster",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        ".blocks": "RasterDone block_grid predict_blocks",
        ".cluster": "open_client parse_scheduler",
        ".inputs": "OutputSet expand_inputs output_set",
        ".many": "ManyResult predict_many",
        ".vectorize": "vectorize_on_cluster",
    },
    __all__,
)
