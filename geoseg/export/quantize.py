"""``quantize_checkpoint``: calibrate the int8 variant of a checkpoint, checked against fp32.

The calibration images go through the tile engine exactly as ``geoseg predict`` feeds them to the
network (read, adapted, normalized); at most ``max_tiles`` of their tiles, spread evenly over them,
set the scales of the activation quantizers (:func:`geoseg.inference.int8.calibrate`). Other
tiles of the same images (never the calibrating ones) decide which parts of the network stay in
float: when int8 throughout agrees with fp32 on fewer than ``search_target`` of their pixels, each
part is quantized alone and ranked by the agreement it keeps, and the most parts, best first, that
together still reach the target run in int8 (see :func:`_search`).
Held-out images, when given, then measure what a user sees: whole images predicted in fp32 and in
int8 through the engine, the share of valid pixels whose class agrees, and with labels the mIoU
of both. The result is the checkpoint again (its stored tensors unchanged) with the variant in its
config.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.errors import NotGeoreferencedWarning
from torch import nn

from geoseg.classes import MASK_NODATA
from geoseg.datasets.kinds import EvalPair
from geoseg.errors import CheckpointError, DatasetError, LowAgreementWarning, NoCRSWarning
from geoseg.evaluation.evaluate import checked_labels, pairs_from_dirs
from geoseg.evaluation.metrics import confusion_matrix, scores
from geoseg.inference.int8 import build_int8, calibrate, quantizable, quantization_groups
from geoseg.inference.options import PredictOptions
from geoseg.inference.session import open_session
from geoseg.io.atomic import check_paths
from geoseg.io.writer import check_destination
from geoseg.models.checkpoint import LoadedModel, rewrite_checkpoint
from geoseg.models.resolve import ModelRef, model_path, resolve_model
from geoseg.models.variants import MIN_AGREEMENT, Int8Variant

__all__ = [
    "IMAGE_SUFFIXES",
    "QuantizeResult",
    "calibration_images",
    "heldout_pairs",
    "quantize_checkpoint",
    "training_split",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".vrt")
SEARCH_TARGET = 0.993  # agreement on the search tiles that stops keeping more layers in float
SEARCH_TILES = 16  # tiles of the calibration images (not calibrating) that steer the search
CHECK_TILES = 32  # tiles apart from both that measure the agreement when no held-out image is given
Progress = Callable[[str, int, int], None]


@dataclass
class QuantizeResult:
    """What :func:`quantize_checkpoint` wrote.

    Attributes:
        path: the checkpoint with its int8 variant.
        variant: the variant as recorded (calibration, agreement, mIoU, float layers).
        search: ``(float layers, agreement on the search tiles)`` of each network tried.
        seconds: wall time.
    """

    path: Path
    variant: Int8Variant
    search: list[tuple[tuple[str, ...], float]]
    seconds: float


def calibration_images(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Image files named by ``paths``: files, folders (their images) or glob patterns, sorted
    within each, in the order given, each once.

    Raises:
        DatasetError: a path that names nothing, or no image at all.
    """
    out: list[str] = []
    for given in paths:
        text = str(given)
        if Path(text).is_dir():
            found = sorted(
                str(p) for p in Path(text).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif Path(text).is_file() or "://" in text:
            found = [text]
        else:
            found = sorted(p for p in glob.glob(text) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DatasetError(
                f"{text}: no image there; expected an image file, a folder of images "
                f"({', '.join(IMAGE_SUFFIXES)}) or a quoted glob such as 'tiles/*.tif'"
            )
        out.extend(p for p in found if p not in out)
    if not out:
        raise DatasetError("no calibration image given; pass --calibration IMAGES...")
    return out


def heldout_pairs(
    images: Iterable[str | os.PathLike[str]], labels: str | os.PathLike[str] | None = None
) -> list[EvalPair]:
    """Held-out images (files, folders or globs), each with its label raster from the folder
    ``labels`` (named like the image, as ``geoseg evaluate --labels`` matches them) when given.

    Raises:
        DatasetError: no image, or an image without labels in ``labels``.
    """
    files = calibration_images(images)
    if labels is None:
        return [EvalPair(p, "", Path(p).name) for p in files]
    found = {Path(p.image).resolve(): p for p in pairs_from_dirs(Path(files[0]).parent, labels)}
    for folder in {Path(p).parent for p in files[1:]}:
        found.update({Path(p.image).resolve(): p for p in pairs_from_dirs(folder, labels)})
    missing = [p for p in files if Path(p).resolve() not in found]
    if missing:
        raise DatasetError(
            f"{missing[0]}: no label raster of the same name in {labels}; name labels like "
            "their images (a.tif with a.tif or a_label.tif)"
        )
    return [found[Path(p).resolve()] for p in files]


def training_split(
    config: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> tuple[list[str], list[EvalPair]]:
    """The training images of a training config's dataset (they calibrate) and its test split
    with labels (held out), e.g. Dubai tiles 1-7 and Tile 8 for ``dubai-default``.

    Raises:
        ConfigError, DatasetError: a config or dataset that cannot be read.
    """
    from geoseg.datasets.kinds import dataset_kind, eval_pairs
    from geoseg.training.config import load_config, resolve_config

    cfg = load_config(resolve_config(str(config)), list(overrides))
    kind = dataset_kind(cfg.data.kind)
    items = kind.parts(cfg.data, cfg.seed)["train"]
    images = [str(getattr(it, "image", "") or kind.scene(it, cfg.data).name) for it in items]
    if not images:
        raise DatasetError(f"{cfg.data.root}: the training split holds no image; check data.split")
    return images, eval_pairs(cfg.data, "test", seed=cfg.seed)


def check_held_out(calibration: Sequence[str], heldout: Sequence[str]) -> None:
    """Refuse held-out images that are also calibration images: the same path, the same file
    under another name (a link), or a copy with the same bytes.

    Raises:
        DatasetError: naming the first such pair.
    """

    def local(paths: Sequence[str]) -> list[str]:
        return [str(p) for p in paths if "://" not in str(p) and os.path.isfile(p)]

    remote = {str(p) for p in calibration if "://" in str(p)} & {
        str(p) for p in heldout if "://" in str(p)
    }
    if remote:
        _shared(sorted(remote)[0], sorted(remote)[0])
    sizes: dict[int, list[str]] = {}
    for p in local(calibration):
        sizes.setdefault(os.path.getsize(p), []).append(p)
    for held in local(heldout):
        for cal in sizes.get(os.path.getsize(held), []):
            if os.path.samefile(cal, held) or _file_digest(cal) == _file_digest(held):
                _shared(cal, held)


def _shared(cal: str, held: str) -> None:
    same = "" if os.path.abspath(cal) == os.path.abspath(held) else f" (the same image as {cal})"
    raise DatasetError(
        f"{held}: is both a calibration and a held-out image{same}; held-out images must not "
        "calibrate, or the agreement they measure says nothing"
    )


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _names(images: Sequence[str]) -> list[str]:
    """Image names relative to their common folder (``Tile 1/images/a.jpg``): what calibrated a
    variant, without the machine's paths."""
    local = [p for p in images if "://" not in p]
    if len(local) < 2:
        return [Path(p).name if "://" not in p else p for p in images]
    root = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in local]))
    return [str(Path(p).resolve().relative_to(root)) if "://" not in p else p for p in images]


def _spread(count: int, wanted: int) -> list[int]:
    """``wanted`` indexes spread evenly over ``range(count)`` (all when fewer)."""
    if count <= wanted:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, wanted).round()})


def sample_tiles(
    images: Sequence[str],
    loaded: LoadedModel,
    options: PredictOptions,
    counts: Sequence[int],
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Disjoint sets of the images' tiles as the engine reads them, ``(1, C, H, W)`` with their
    validity ``(1, H, W)``: the first set of ``counts[0]`` tiles spread evenly over all tiles, each
    next one spread evenly over the tiles left. Tiles without valid pixels are dropped."""
    plans: list[tuple[str, Any]] = []
    for image in images:
        with _quiet(), open_session(image, loaded, options) as session:
            plans.extend((image, tile.window) for tile in session.plan)
    role: dict[int, int] = {}
    left = list(range(len(plans)))
    for k, count in enumerate(counts):
        later = sum(1 for c in counts[k + 1 :] if c)  # sets still to fill share what is left
        if k and later and len(left) < sum(counts[k:]):
            count = min(count, len(left) // (later + 1))
        taken = [left[i] for i in _spread(len(left), count)]
        role.update(dict.fromkeys(taken, k))
        left = [i for i in left if i not in role]
    sets: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in counts]
    by_image: dict[str, list[int]] = {}
    for i in sorted(role):
        by_image.setdefault(plans[i][0], []).append(i)
    for image, indexes in by_image.items():
        with _quiet(), open_session(image, loaded, options) as session:
            for i in indexes:
                item = session.read_tile(plans[i][1])
                if item is not None:  # a tile without valid pixels teaches nothing
                    x, valid = (torch.from_numpy(a[None]) for a in item)
                    sets[role[i]].append((x, valid))
    return sets


class _quiet(warnings.catch_warnings):
    """No warning for images without georeferencing (JPEG tiles are fine for calibration), nor for
    the variant's agreement, which is being measured."""

    def __enter__(self) -> Any:
        out = super().__enter__()
        for category in (NotGeoreferencedWarning, NoCRSWarning, LowAgreementWarning):
            warnings.simplefilter("ignore", category)
        return out


def _digest(tiles: Sequence[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for x in tiles:
        h.update(x.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _with_reference(model: nn.Module, tiles: Sequence[Any]) -> list[Any]:
    """``(x, valid, fp32 classes)`` for each ``(x, valid)`` tile."""
    with torch.inference_mode():
        return [(x, valid, model(x).argmax(1)) for x, valid in tiles]


def _agreement(candidate: nn.Module, tiles: Sequence[Any]) -> float:
    """Share of the valid pixels of ``(x, valid, fp32 classes)`` tiles whose class ``candidate``
    gives the same."""
    same = total = 0
    with torch.inference_mode():
        for x, valid, reference in tiles:
            hit = (candidate(x).argmax(1) == reference)[valid]
            same, total = same + int(hit.sum()), total + hit.numel()
    return same / total if total else 1.0


def _search(
    loaded: LoadedModel,
    variant: Int8Variant,
    tiles: Sequence[Any],
    target: float,
    fixed: Sequence[str] | None,
    progress: Progress | None,
) -> tuple[Int8Variant, list[tuple[tuple[str, ...], float]]]:
    """The parts of the network to keep in float (see :func:`quantization_groups`), found on the
    search tiles without timing anything.

    When int8 throughout agrees with fp32 on ``target`` of their pixels, nothing stays in float.
    Otherwise each part is quantized alone; parts are ranked by the agreement they cost per
    multiply-add they would run in int8 (cheapest first: int8 pays where the arithmetic is), and
    the longest prefix of that ranking whose joint agreement reaches ``target`` is quantized
    (found by bisection). ``fixed`` layers skip the search.
    """
    if fixed is not None or not tiles:
        return dataclasses.replace(variant, float_layers=tuple(fixed or ())), []
    bands = loaded.config.in_channels
    groups = quantization_groups(quantizable(loaded.model), bands)
    tiles = _with_reference(loaded.model, tiles)
    names = list(groups)
    tried: list[tuple[tuple[str, ...], float]] = []

    def agreement_with(floats: Sequence[str]) -> float:
        trial = dataclasses.replace(variant, float_layers=tuple(floats))
        value = _agreement(build_int8(loaded.model, trial, bands), tiles)
        tried.append((tuple(floats), value))
        log.info("int8 with %d part(s) in float: agreement %.4f", len(floats), value)
        if progress is not None:
            progress("search", len(tried), 2 * len(names))
        return value

    if agreement_with(()) >= target:  # all in int8
        return dataclasses.replace(variant, float_layers=()), tried
    cost = {
        g: (1 - agreement_with([h for h in names if h != g])) / max(groups[g], 1) for g in names
    }
    ranked = sorted(names, key=lambda g: cost[g])  # stable: ties keep network order

    def floats_for(k: int) -> tuple[str, ...]:  # the parts left in float when k are quantized
        return tuple(g for g in names if g not in ranked[:k])

    low, high = 0, len(names)  # quantizing the first `low` reaches the target, `high` does not
    while high - low > 1:
        mid = (low + high) // 2
        if agreement_with(floats_for(mid)) >= target:
            low = mid
        else:
            high = mid
    return dataclasses.replace(variant, float_layers=floats_for(low)), tried


def _heldout(
    loaded: LoadedModel,
    pairs: Sequence[EvalPair],
    options: PredictOptions,
    progress: Progress | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Agreement of int8 with fp32 over the held-out images' valid pixels, and the mIoU of both
    where labels are given."""
    names = loaded.config.classes.names
    ids = np.array([c.id for c in loaded.config.classes])
    n = len(names)
    same = total = 0
    matrices = {"fp32": np.zeros((n, n), np.int64), "int8": np.zeros((n, n), np.int64)}
    labelled = 0
    for k, pair in enumerate(pairs):
        masks = {}
        for precision in ("fp32", "int8"):
            with (
                _quiet(),
                open_session(
                    pair.image, loaded, options.replace(precision=precision, device="cpu")
                ) as session,
            ):
                masks[precision] = session.classes().data[0]
        valid = masks["fp32"] != MASK_NODATA
        same += int((masks["fp32"] == masks["int8"])[valid].sum())
        total += int(valid.sum())
        if isinstance(pair.labels, np.ndarray) or pair.labels:
            labels = checked_labels(pair, valid.shape, names)
            for precision, mask in masks.items():
                pred = np.full(mask.shape, -1, np.int64)
                for i, cid in enumerate(ids):
                    pred[mask == cid] = i
                matrices[precision] += confusion_matrix(pred, labels, n, valid=valid)
            labelled += 1
        if progress is not None:
            progress("held-out", k + 1, len(pairs))
    on = f"{len(pairs)} held-out image(s)"
    agreement = {"value": same / total if total else None, "pixels": total, "on": on}
    miou = None
    if labelled:
        miou = {p: round(float(scores(m).miou), 6) for p, m in matrices.items()} | {
            "on": f"{labelled} held-out labelled image(s)"
        }
    return agreement, miou


def quantize_checkpoint(
    checkpoint: ModelRef,
    dst: str | os.PathLike[str],
    calibration: Sequence[str | os.PathLike[str]],
    *,
    heldout: Sequence[EvalPair | str | os.PathLike[str]] = (),
    options: PredictOptions | None = None,
    max_tiles: int = 64,
    float_layers: Sequence[str] | None = None,
    search_target: float = SEARCH_TARGET,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Calibrate the int8 variant of ``checkpoint`` on ``calibration`` images and write it to
    ``dst`` with what it measured (see the module).

    Args:
        checkpoint: a checkpoint path or a bundled model's name.
        dst: the ``.safetensors`` file to write.
        calibration: images like the model's training data (files, folders or glob patterns).
        heldout: images never used to calibrate, or :class:`EvalPair` with labels: the recorded
            agreement (and mIoU) is measured on them; without any, on tiles of the calibration
            images that did not calibrate.
        options: how images are read (tile size, bands, scale), as ``geoseg predict`` takes them.
        max_tiles: calibration tiles at most, spread evenly over the images.
        float_layers: layers to keep in float, skipping the search (``()``: quantize all).
        search_target: agreement on the search tiles that ends the search.
        overwrite: replace ``dst``.

    Raises:
        CheckpointError: a model file other than a checkpoint, or a network that cannot be
            quantized; DatasetError: no calibration image; OutputExistsError,
            OutputCollisionError: ``dst`` exists or names an input.
    """
    start = time.perf_counter()
    out = Path(dst)
    if out.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{out}: expected a file name ending in .safetensors")
    source = model_path(checkpoint)
    if source is None or Path(source).suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{checkpoint!r}: expected a .safetensors checkpoint or a bundled model's name "
            "(quality, fast); an int8 variant is calibrated from the float weights"
        )
    images = calibration_images(calibration)
    pairs = [p if isinstance(p, EvalPair) else EvalPair(str(p), "", Path(p).name) for p in heldout]
    inputs: dict[str, Any] = {"CKPT": source}
    inputs.update({f"calibration {k + 1}": p for k, p in enumerate(images)})
    inputs.update({f"held-out {k + 1}": p.image for k, p in enumerate(pairs)})
    check_paths(inputs, {"OUT": out})
    check_destination(out, overwrite=overwrite)
    check_held_out(images, [str(p.image) for p in pairs])
    opts = PredictOptions.of(options).replace(precision="fp32", device="cpu", tta="none")
    loaded = resolve_model(source)
    checks = 0 if pairs else CHECK_TILES
    searches = 0 if float_layers is not None else SEARCH_TILES
    cal_set, check, search = sample_tiles(images, loaded, opts, (max_tiles, checks, searches))
    cal = [x for x, _ in cal_set]
    log.info("calibrating on %d tiles of %d image(s)", len(cal), len(images))
    if progress is not None:
        progress("calibrate", 0, len(cal))
    qparams = calibrate(loaded.model, cal, loaded.config.in_channels)
    variant = Int8Variant(
        qparams=qparams,
        calibration={"images": _names(images), "tiles": len(cal), "digest": _digest(cal)},
        torch=torch.__version__.split("+")[0],
    )
    variant, tried = _search(loaded, variant, search, search_target, float_layers, progress)
    if pairs:
        staged = LoadedModel(
            loaded.model,
            loaded.config.replace(variants={**loaded.config.variants, "int8": variant.to_dict()}),
        )
        agreement, miou = _heldout(staged, pairs, opts, progress)
        variant = dataclasses.replace(variant, agreement=agreement, miou=miou)
    elif check:
        value = _agreement(
            build_int8(loaded.model, variant, loaded.config.in_channels),
            _with_reference(loaded.model, check),
        )
        pixels = int(sum(int(v.sum()) for _, v in check))
        on = f"{len(check)} tiles of the calibration images that neither calibrated nor searched"
        variant = dataclasses.replace(
            variant, agreement={"value": value, "pixels": pixels, "on": on}
        )
    config = loaded.config.replace(variants={**loaded.config.variants, "int8": variant.to_dict()})
    rewrite_checkpoint(source, out, config)
    measured = variant.agreement_value
    log.info(
        "%s: int8 variant, agreement with fp32 %s (auto uses it from %.0f%%)",
        out,
        "unknown" if measured is None else f"{measured:.4f}",
        100 * MIN_AGREEMENT,
    )
    return QuantizeResult(out, variant, tried, time.perf_counter() - start)
