"""Training: YAML configs, losses, the Lightning task and the :func:`train` entry point.

``from geoseg.training import train, load_config`` needs no torch; torch and Lightning load
when a run starts.

Example::

    from geoseg.training import load_config, train
    run = train(load_config("dubai-default", ["data.root=/data/dubai", "epochs=5"]))
    print(run.checkpoint, run.metrics["validation"]["miou"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes
from geoseg.training.config import (
    DataConfig,
    ModelSpec,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    load_config,
    resolve_config,
)

# ``train`` is also the name of a submodule: binding the function here, after that submodule is
# imported, keeps ``geoseg.training.train`` the function.
from geoseg.training.train import TrainResult, train

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.training.data import DataBundle, build_data
    from geoseg.training.losses import LOSSES, build_loss, register_loss

__all__ = [
    "LOSSES",
    "DataBundle",
    "DataConfig",
    "ModelSpec",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "apply_overrides",
    "build_data",
    "build_loss",
    "load_config",
    "register_loss",
    "resolve_config",
    "train",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {".data": "DataBundle build_data", ".losses": "LOSSES build_loss register_loss"},
    __all__,
)
