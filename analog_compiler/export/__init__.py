"""Realistic weights out: ``to_digital`` (a plain PyTorch model) and ``export_onnx`` (ONNX,
checked by onnxruntime, with the analog config in its metadata)."""

from .digital import realistic_copy, to_digital
from .metadata import read_metadata, rpu_config_from_metadata
from .onnx import ExportVerificationError, OnnxExport, export_onnx

__all__ = ["ExportVerificationError", "OnnxExport", "export_onnx", "read_metadata",
           "realistic_copy", "rpu_config_from_metadata", "to_digital"]
