from __future__ import annotations

import numpy as np
import pytest

from geoseg.errors import TilingError
from geoseg.inference.blending import BLEND_KERNELS, blend_weights


@pytest.mark.parametrize("name", sorted(BLEND_KERNELS))
@pytest.mark.parametrize("tile", [1, 2, 7, 64])
def test_kernels_are_positive_and_normalised(name: str, tile: int) -> None:
    w = blend_weights(name, tile, tile // 4)
    assert w.shape == (tile, tile) and w.dtype == np.float32
    assert (w > 0).all() and w.max() == pytest.approx(1.0)
    np.testing.assert_allclose(w, w.T, atol=1e-7)  # symmetric


def test_callable_kernel_and_unknown_name() -> None:
    w = blend_weights(lambda t, o: np.arange(t * t, dtype=float).reshape(t, t), 4, 1)
    assert w.min() > 0 and w.max() == 1
    with pytest.raises(TilingError, match="unknown blend 'tent'; expected one of"):
        blend_weights("tent", 8, 2)
    with pytest.raises(TilingError, match="must return finite"):
        blend_weights(lambda t, o: np.ones((t, t + 1)), 8, 2)


def test_core_keeps_each_tiles_centre_as_deepness_does() -> None:
    w = blend_weights("core", 64, 16)
    assert (w[8:56, 8:56] == 1).all()
    assert w[0, 32] == w[32, 7] == np.float32(1e-12) and w[0, 0] == np.float32(1e-24)
    # on a regular grid (stride 48) the cores of neighbouring tiles meet without overlapping
    row = np.zeros(64 + 48)
    row[:64] += w[32] == 1
    row[48:] += w[32] == 1
    assert row[8:104].tolist() == [1.0] * 96
