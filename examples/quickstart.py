"""Quick start: convert a small model to analog tiles, program, drift to one hour, and compare.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import torch
from torch import nn

import analog_compiler as ac


def main() -> None:
    torch.manual_seed(0)
    digital = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    x = torch.randn(128, 64)
    y_ref = digital(x)

    rpu_config = ac.InferenceRPUConfig(mapping=ac.MappingParameter(weight_scaling_omega=1.0))
    analog = nn.Sequential(ac.AnalogLinear.from_digital(digital[0], rpu_config), nn.ReLU(),
                           ac.AnalogLinear.from_digital(digital[2], rpu_config)).eval()
    print(analog)
    with torch.no_grad():
        for t in (0.0, 3600.0):
            ac.drift_analog_weights(analog, t_inference=t)
            err = (analog(x) - y_ref).norm() / y_ref.norm()
            print(f"t = {t:6.0f} s: relative output error vs digital = {err:.3f}")


if __name__ == "__main__":
    main()
