"""Class masks to polygons: blockwise, seam-free, with class names, true areas and the mask's CRS.

Nothing here imports torch: vectorizing needs only the geospatial stack.
"""

from geoseg.vectorize.engine import VectorizeResult, vectorize_raster
from geoseg.vectorize.options import CONNECTIVITIES, LAYOUTS, VectorizeOptions
from geoseg.vectorize.sinks import FORMATS

__all__ = [
    "CONNECTIVITIES",
    "FORMATS",
    "LAYOUTS",
    "VectorizeOptions",
    "VectorizeResult",
    "vectorize_raster",
]
