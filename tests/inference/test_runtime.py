from __future__ import annotations

import pytest
import torch

from geoseg.errors import DeviceError
from geoseg.inference.runtime import resolve_device


def test_devices_are_checked_with_what_is_accepted() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for name in ("tpu", "gpu", "cuda:x", ""):
        with pytest.raises(DeviceError, match="expected auto, cpu, cuda or cuda:N"):
            resolve_device(name)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    # the GPU asked for is named in the refusal, index included
    with pytest.raises(DeviceError, match=rf"'cuda:{count + 6}'"):
        resolve_device(f"cuda:{count + 6}")
