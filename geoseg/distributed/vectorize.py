"""``vectorize_on_cluster``: the vectorizer's blocks polygonized on Dask workers.

The vectorizer already works in blocks with a pool and merges seams in raster order in the
calling process; here the pool is a Dask executor, so the polygons are those of a
single-process run. The mask may be local (on a filesystem the workers share) or ``s3://``; an
``s3://`` destination is built locally and uploaded when complete.
"""

from __future__ import annotations

import os
from typing import Any

from geoseg.distributed.cluster import open_client, total_threads
from geoseg.vectorize.options import VectorizeOptions

__all__ = ["vectorize_on_cluster"]


def vectorize_on_cluster(
    mask: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    options: VectorizeOptions | None = None,
    *,
    scheduler: Any,
    retries: int = 2,
    overwrite: bool = False,
    **kwargs: Any,
) -> Any:
    """:func:`~geoseg.vectorize.vectorize_raster` with its blocks polygonized on ``scheduler``
    (``"local:N"``, ``"tcp://host:port"``, a ``distributed.Client``, or None: in this process);
    ``options`` (:class:`~geoseg.vectorize.VectorizeOptions`) and other keyword arguments are
    those of ``vectorize_raster``.

    Returns:
        The :class:`~geoseg.vectorize.engine.VectorizeResult` (its ``path`` is the local build
        file when ``dst`` is ``s3://``).
    """
    from geoseg.io.storage import check_output, published
    from geoseg.vectorize import vectorize_raster

    check_output(dst, overwrite=overwrite)
    if scheduler is None:  # in this process (an s3:// destination)
        with published(dst) as local:
            return vectorize_raster(mask, local, options, overwrite=True, **kwargs)
    with open_client(scheduler) as (client, _), published(dst) as local:
        opts = VectorizeOptions.of(options)
        if opts.workers is None:
            opts = opts.replace(workers=total_threads(client))
        return vectorize_raster(
            mask,
            local,
            opts,
            overwrite=True,
            pool=client.get_executor(retries=retries, pure=False),
            **kwargs,
        )
