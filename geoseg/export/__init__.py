"""Model export (ONNX with QGIS Deepness metadata, TorchScript, a calibrated int8 variant) and the
onnxruntime runner.

Names load lazily: ``import geoseg.export`` needs neither torch nor onnx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.export.metadata import deepness_metadata, export_metadata
    from geoseg.export.onnx import ExportResult, Parity, export_onnx, read_metadata
    from geoseg.export.onnx_int8 import Int8Export
    from geoseg.export.quantize import QuantizeResult, quantize_checkpoint
    from geoseg.export.runner import OnnxModule, load_onnx
    from geoseg.export.torchscript import export_torchscript

__all__ = [
    "ExportResult",
    "Int8Export",
    "OnnxModule",
    "Parity",
    "QuantizeResult",
    "deepness_metadata",
    "export_metadata",
    "export_onnx",
    "export_torchscript",
    "load_onnx",
    "quantize_checkpoint",
    "read_metadata",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        ".metadata": "deepness_metadata export_metadata",
        ".onnx": "ExportResult Parity export_onnx read_metadata",
        ".onnx_int8": "Int8Export",
        ".quantize": "QuantizeResult quantize_checkpoint",
        ".runner": "OnnxModule load_onnx",
        ".torchscript": "export_torchscript",
    },
    __all__,
)
