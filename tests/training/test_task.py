"""The optimizer's parameter groups: a pretrained encoder can learn slower than the decoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geoseg.errors import ConfigError
from geoseg.models import build_model
from geoseg.training.task import parameter_groups


def test_encoder_learns_at_its_own_rate_and_every_weight_is_in_one_group() -> None:
    model = build_model("unet", "resnet18", classes=3, decoder_channels=[32, 16, 8, 8, 8])
    one = parameter_groups(model, 0.01, 1.0)
    assert len(one) == 1 and len(one[0]["params"]) == len(list(model.parameters()))
    encoder, rest = parameter_groups(model, 0.01, 0.1)
    assert encoder["lr"] == pytest.approx(0.001) and rest["lr"] == 0.01
    ids = [id(p) for g in (encoder, rest) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each once, none left out
    assert {id(p) for p in encoder["params"]} == {id(p) for p in model.encoder.parameters()}
    # a one-cycle schedule over both groups keeps their ratio at every step
    opt = torch.optim.AdamW([encoder, rest])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.001, 0.01], total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs[0] == pytest.approx(lrs[1] / 10)


def test_a_network_without_an_encoder_refuses_another_scale() -> None:
    net = nn.Sequential(nn.Conv2d(3, 2, 1))
    assert len(parameter_groups(net, 0.01, 1.0)) == 1
    with pytest.raises(ConfigError, match=r"optim.encoder_lr_scale=0.1: .*no encoder"):
        parameter_groups(net, 0.01, 0.1)
