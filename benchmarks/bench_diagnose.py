"""Benchmark ``diagnose`` (every output) against plain ``evaluate`` on the Dubai held-out tile.

Runs, in one process and on the same images (the test split of ``dubai-default``: Tile 8), plain
``evaluate`` and then ``diagnose`` with all outputs (error maps, entropy, margin, per-cell
metrics, calibration with a temperature fit, worst-cell panels, summary page), and prints both
times and their ratio. With ``--docs DIR`` it also writes the pictures the docs show: one
error map, one Grad-CAM overlay and the reliability diagram.

Usage: python benchmarks/bench_diagnose.py --root "/data/Semantic segmentation dataset"
       [--limit N] [--docs docs]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio


def render_error_map(errors: Path, dst: Path, max_size: int = 900) -> None:
    """A PNG of an error-map COG with its colour table and a legend of the pairs present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from geoseg.io.overlay import save_figure
    from geoseg.vectorize.source import classes_of

    with rasterio.open(errors) as src:
        scale = max(src.width, src.height) / max_size
        shape = (round(src.height / max(scale, 1)), round(src.width / max(scale, 1)))
        codes = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.mode)
        table = classes_of(src)
    assert table is not None
    lut = np.full((256, 3), 255, np.uint8)
    for c in table:
        lut[c.id] = c.color
    present = sorted(((codes == c.id).mean(), c) for c in table if (codes == c.id).mean() > 0.005)[
        ::-1
    ]
    fig, ax = plt.subplots(figsize=(9, 9 * shape[0] / shape[1] + 1.2))
    ax.imshow(lut[codes], interpolation="nearest")
    ax.set_axis_off()
    ax.set_title("error map: correct (grey) and true -> predicted (colour of the predicted class)")
    fig.legend(
        handles=[
            Patch(color=tuple(v / 255 for v in c.color), label=f"{c.name} ({f:.1%})")
            for f, c in present[:12]
        ],
        loc="lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.subplots_adjust(bottom=0.16)
    save_figure(fig, dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--root", required=True, help="The Dubai dataset folder ('Semantic segmentation dataset')."
    )
    ap.add_argument("--limit", type=int, default=None, help="Only the first N held-out images.")
    ap.add_argument(
        "--docs", type=Path, default=None, help="Also write the docs pictures into this folder."
    )
    args = ap.parse_args()
    from geoseg.evaluation.diagnose import diagnose
    from geoseg.evaluation.evaluate import evaluate, pairs_from_config
    from geoseg.models.default import default_model
    from geoseg.training.config import load_config

    pairs = pairs_from_config(load_config("dubai-default", [f"data.root={args.root}"]), "test")[
        : args.limit
    ]
    model = str(default_model())
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-diag-") as tmp:
        start = time.perf_counter()
        report = evaluate(model, pairs, device="cpu")
        t_eval = time.perf_counter() - start
        start = time.perf_counter()
        res = diagnose(model, pairs, Path(tmp, "diag"), device="cpu", temperature=True)
        t_diag = time.perf_counter() - start
        print(
            f"{len(pairs)} Dubai held-out image(s), {report.megapixels:.2f} Mpx, bundled model, "
            "CPU; one run on a shared machine"
        )
        print(
            f"  evaluate {t_eval:.1f} s (mIoU {report.scores.miou:.3f}); diagnose with every "
            f"output {t_diag:.1f} s (mIoU {res.report.scores.miou:.3f}, ECE {res.ece:.4f}, T "
            f"{res.temperature:.3f} -> ECE {res.ece_tempered:.4f}); diagnose / evaluate = "
            f"{t_diag / t_eval:.2f}"
        )
        if args.docs is not None:
            from geoseg.explain import explain_raster

            args.docs.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(tmp, "diag", "reliability.png"), args.docs / "reliability.png")
            first = res.report.per_image[0]
            render_error_map(
                Path(tmp, "diag", first["outputs"], "errors.tif"), args.docs / "error-map.png"
            )
            explain_raster(
                pairs[0].image,
                Path(tmp, "cam.tif"),
                model,
                target="building",
                overlay=args.docs / "gradcam-building.png",
                device="cpu",
                overwrite=True,  # the pictures are remade on every --docs run
            )
            print(
                f"  pictures of {first['image']} in {args.docs}/: error-map.png, "
                "gradcam-building.png, reliability.png"
            )


if __name__ == "__main__":
    main()
