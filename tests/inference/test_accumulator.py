from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from geoseg.inference.accumulator import FinishedRows, RowAccumulator
from geoseg.io.windows import plan_tiles


def test_streamed_blend_equals_a_full_canvas() -> None:
    rng = np.random.default_rng(1)
    plan = plan_tiles(50, 37, 16, 5)
    weight = rng.uniform(0.1, 1, (16, 16)).astype(np.float32)
    full_p = np.zeros((2, 50, 37), np.float32)
    full_w = np.zeros((50, 37), np.float32)
    acc = RowAccumulator(2, Window(0, 0, 37, 50), 16)
    out = []
    for t in plan:
        p = rng.uniform(size=(2, 16, 16)).astype(np.float32) * weight
        r, c = int(t.window.row_off), int(t.window.col_off)
        full_p[:, r : r + 16, c : c + 16] += p
        full_w[r : r + 16, c : c + 16] += weight
        acc.add(p, weight, np.ones((16, 16), bool), r, c)
        if t.grid_col == plan.shape[1] - 1:
            done = acc.release(plan.rows_final_after(t.grid_row))
            if done:  # views, valid until the next call: keep copies
                out.append(
                    FinishedRows(
                        done.window, done.probs.copy(), done.weight.copy(), done.valid.copy()
                    )
                )
    assert sum(o.window.height for o in out) == 50
    np.testing.assert_allclose(np.concatenate([o.probs for o in out], axis=1), full_p, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([o.weight for o in out], axis=0), full_w, rtol=1e-6)
    assert acc.nbytes <= 2 * 16 * 37 * 4 + 16 * 37 * 5  # one tile high, whatever the raster height
