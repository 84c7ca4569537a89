"""Every registered loss runs, skips ignored pixels, and gives the value worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from geoseg.classes import IGNORE_INDEX as IGNORE
from geoseg.errors import ConfigError
from geoseg.training.losses import LOSSES, build_loss

C = 3


def _target() -> torch.Tensor:
    """``(1, 4, 4)`` labels: class 0 on 8 pixels, 1 on 4, 2 on 2, and 2 ignored."""
    t = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [2, 2, IGNORE, IGNORE]])
    return t[None]


def _confident(target: torch.Tensor, right: bool = True) -> torch.Tensor:
    """Logits of 20 for the true class (or the next one when not ``right``), -20 elsewhere (the
    focal loss scores each class with a sigmoid)."""
    cls = target.clamp(max=C - 1)
    cls = cls if right else (cls + 1) % C
    return 20.0 * (2 * torch.nn.functional.one_hot(cls, C).permute(0, 3, 1, 2).float() - 1)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_rewards_the_truth_and_skips_ignored_pixels(name: str) -> None:
    loss = build_loss(name)
    target = _target()
    good, bad = loss(_confident(target), target), loss(_confident(target, False), target)
    assert float(good) < 1e-3 < float(bad), (float(good), float(bad))
    logits = torch.randn(1, C, 4, 4, generator=torch.Generator().manual_seed(0))
    moved = logits.clone()
    moved[..., 3, 2:] = torch.tensor([50.0, -50.0, 0.0])[:, None]  # only the ignored pixels
    assert float(loss(moved, target)) == pytest.approx(float(loss(logits, target)), abs=1e-6)
    logits.requires_grad_(True)
    loss(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert (logits.grad[..., 3, 2:] == 0).all() and logits.grad.abs().sum() > 0


def test_uniform_logits_give_the_values_worked_out_by_hand() -> None:
    target, flat = _target(), torch.zeros(1, C, 4, 4)
    counted = 14  # pixels not ignored
    assert float(build_loss("ce")(flat, target)) == pytest.approx(math.log(C))
    # smp's focal loss in multiclass mode scores each class with a sigmoid: with logits 0,
    # p = 0.5, so (1 - p_t)^2 * ln 2 per pixel and class, averaged over pixels and classes
    assert float(build_loss("focal")(flat, target)) == pytest.approx(0.25 * math.log(2))
    # softmax gives 1/C everywhere: per class c with n_c pixels, intersection n_c / C and
    # cardinality counted / C + n_c; the loss is the mean over classes of 1 - score
    sizes = [8, 4, 2]
    dice = [2 * (n / C) / (counted / C + n) for n in sizes]
    jaccard = [(n / C) / (counted / C + n - n / C) for n in sizes]
    assert float(build_loss("dice")(flat, target)) == pytest.approx(1 - sum(dice) / C, abs=1e-5)
    assert float(build_loss("jaccard")(flat, target)) == pytest.approx(
        1 - sum(jaccard) / C, abs=1e-5
    )


def test_a_weighted_sum_of_losses_is_the_sum_of_its_parts() -> None:
    target = _target()
    logits = torch.randn(1, C, 4, 4, generator=torch.Generator().manual_seed(1))
    parts = {"ce": 1.0, "focal": 0.5, "jaccard": 2.0, "lovasz": 0.25}
    combined = float(build_loss(parts)(logits, target))
    assert combined == pytest.approx(
        sum(w * float(build_loss(n)(logits, target)) for n, w in parts.items()), rel=1e-6
    )
    with pytest.raises(ConfigError, match=r"loss\.hinge: unknown loss; expected some of ce, dice"):
        build_loss({"hinge": 1.0})
