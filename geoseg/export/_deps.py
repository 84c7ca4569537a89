"""Lazy imports of the optional export dependencies, with the install hint in the error."""

from __future__ import annotations

import importlib
from types import ModuleType

from geoseg.errors import MissingDependencyError

__all__ = ["require"]


def require(name: str) -> ModuleType:
    """Import ``name`` (``onnx``, ``onnxruntime``) or say which extra brings it.

    Raises:
        MissingDependencyError: the package is not installed.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError(
            f"{name} is needed to export or run ONNX models but is not installed; "
            "install it with pip install 'geoseg[export]'"
        ) from None
