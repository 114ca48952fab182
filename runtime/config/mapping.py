"""MappingParameter: how a weight matrix is cut into tiles and scaled onto them."""

from __future__ import annotations

from dataclasses import dataclass

from .base import ConfigBase, check_bool, check_int, check_number


@dataclass
class MappingParameter(ConfigBase):
    """Tile sizes and weight scaling, with aihwkit's names and defaults."""

    digital_bias: bool = True
    """The bias is added digitally after the tiles (the only supported placement)."""
    weight_scaling_omega: float = 0.0
    """> 0: weights are scaled so that max|W| (per tile, or per row) maps to omega; 0: none."""
    weight_scaling_columnwise: bool = False
    """Scale per output row (True) or one scale per tile (False)."""
    weight_scaling_lr_compensation: bool = False
    """Kept for aihwkit compatibility; learning-rate compensation of analog SGD (unused here)."""
    learn_out_scaling: bool = False
    """Learned digital output scales (per column when ``out_scaling_columnwise``)."""
    out_scaling_columnwise: bool = False
    """Learned output scales per output column instead of one per layer."""
    max_input_size: int = 512
    """Largest tile input (columns); 0 = no split of the inputs."""
    max_output_size: int = 512
    """Largest tile output (rows); 0 = no split of the outputs."""

    def __post_init__(self) -> None:
        for name in ("digital_bias", "weight_scaling_columnwise", "weight_scaling_lr_compensation",
                     "learn_out_scaling", "out_scaling_columnwise"):
            check_bool(self, name)
        check_number(self, "weight_scaling_omega", min_value=0.0)
        check_int(self, "max_input_size", min_value=0)
        check_int(self, "max_output_size", min_value=0)
        if not self.digital_bias:
            raise ValueError("MappingParameter.digital_bias=False (an analog bias column) is not "
                             "supported; the bias is always added digitally")
