"""Device presets with published parameters and ``build_config`` (aihwkit 1.2.0's
``presets/devices.py`` and ``configs/helpers.py``, names and numbers).

Presets are device classes whose defaults are the published fits; fields of aihwkit features the
simulator does not model are set to their "off" value, and each such difference is named in the
class docstring (never silent).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .compounds import DigitalRankUpdateRPUConfig, MixedPrecisionCompound
from .devices import (
    ConstantStepDevice,
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    PulsedDevice,
    SoftBoundsDevice,
)
from .enums import BoundManagementType, NoiseManagementType
from .io import IOParameters
from .transfer import (
    ChoppedTransferCompound,
    DynamicTransferCompound,
    TransferCompound,
    UnitCellRPUConfig,
)
from .update import SingleRPUConfig, UpdateParameters


@dataclass
class ReRamSBPresetDevice(SoftBoundsDevice):
    """ReRAM with soft bounds (Gong & Rasch et al., IEDM 2022; aihwkit's ``ReRamSBPresetDevice``,
    a ``SoftBoundsReferenceDevice``): additive cycle-to-cycle noise of 3.75 ``dw_min``.
    Differences: aihwkit's write noise (``write_noise_std=56``) is not modelled (0 here)."""

    dw_min: float = 0.002
    up_down: float = 0.0
    w_max: float = 1.25
    w_min: float = -0.75
    mult_noise: bool = False
    dw_min_dtod: float = 0.3
    up_down_dtod: float = 0.01
    w_max_dtod: float = 0.3 / 1.25
    w_min_dtod: float = 0.3 / 0.75
    dw_min_std: float = 3.75


@dataclass
class CapacitorPresetDevice(LinearStepDevice):
    """Capacitor-based cross-point (Li et al., VLSI 2018; aihwkit's ``CapacitorPresetDevice``).
    Differences: aihwkit's leakage (``lifetime=1e6``, ``lifetime_dtod=0.3``) is not modelled."""

    dw_min: float = 0.005
    up_down: float = 0.0
    w_max: float = 1.0
    w_min: float = -1.0
    mult_noise: bool = False
    gamma_up: float = 0.05
    gamma_down: float = 0.05
    dw_min_dtod: float = 0.1
    up_down_dtod: float = 0.06
    w_max_dtod: float = 0.07
    w_min_dtod: float = 0.07
    gamma_up_dtod: float = 0.01
    gamma_down_dtod: float = 0.01
    dw_min_std: float = 0.3
    mean_bound_reference: bool = True


@dataclass
class _EcRamFamily(LinearStepDevice):
    """The device-to-device spreads and noise model the two ECRAM presets share."""

    up_down: float = 0.0
    mult_noise: bool = True
    dw_min_dtod: float = 0.1
    up_down_dtod: float = 0.01
    w_max_dtod: float = 0.05
    w_min_dtod: float = 0.05
    gamma_up_dtod: float = 0.05
    gamma_down_dtod: float = 0.05
    mean_bound_reference: bool = True


@dataclass
class EcRamPresetDevice(_EcRamFamily):
    """Li-ion ECRAM (Tang et al., IEDM 2018; aihwkit's ``EcRamPresetDevice``)."""

    dw_min: float = 0.002
    w_max: float = 1.1724
    w_min: float = -0.8276
    gamma_up: float = 0.1153
    gamma_down: float = 0.5085
    dw_min_std: float = 0.3


@dataclass
class EcRamMOPresetDevice(_EcRamFamily):
    """Metal-oxide ECRAM (Kim et al., IEDM 2019; aihwkit's ``EcRamMOPresetDevice``)."""

    dw_min: float = 2.8214e-4
    w_max: float = 1.1714
    w_min: float = -0.8286
    gamma_up: float = 0.4152
    gamma_down: float = 0.7342
    dw_min_std: float = 2.0


@dataclass
class _SymmetricConstantStep(ConstantStepDevice):
    """The symmetric range and the 30 % spreads the two constant-step presets share."""

    dw_min_dtod: float = 0.3
    dw_min_std: float = 0.3
    up_down: float = 0.0
    w_max: float = 1.0
    w_min: float = -1.0
    w_max_dtod: float = 0.3
    w_min_dtod: float = 0.3


@dataclass
class IdealizedPresetDevice(_SymmetricConstantStep):
    """An idealized constant-step device: about 10000 states (aihwkit's
    ``IdealizedPresetDevice``)."""

    dw_min: float = 0.0002
    up_down_dtod: float = 0.0


@dataclass
class GokmenVlasovPresetDevice(_SymmetricConstantStep):
    """The constant-step device of Gokmen & Vlasov, Front. Neurosci. 2016: 1200 states (aihwkit's
    ``GokmenVlasovPresetDevice``)."""

    dw_min: float = 0.0016
    up_down_dtod: float = 0.01


@dataclass
class PCMPresetDevice(ExpStepDevice):
    """A PCM-like device, unidirectional in the pair sense (Nandakumar et al. 2020; aihwkit's
    ``PCMPresetDevice``): exponential step with weight-dependent noise, range [0, 2]."""

    dw_min: float = 0.01
    up_down: float = 0.0
    w_max: float = 2.0
    w_min: float = 0.0
    a: float = -1.0
    b: float = 0.0
    gamma_up: float = 2.5
    gamma_down: float = 2.5
    A_up: float = -27.235  # noqa: N815 (aihwkit's name)
    A_down: float = -2.235  # noqa: N815 (aihwkit's name)
    dw_min_dtod: float = 0.2
    up_down_dtod: float = 0.05
    w_max_dtod: float = 0.1
    w_min_dtod: float = 0.0
    dw_min_std: float = 0.6
    dw_min_std_add: float = 0.042
    dw_min_std_slope: float = 0.108
    reset: float = 0.01
    reset_dtod: float = 0.02


PRESET_DEVICES = (ReRamSBPresetDevice, CapacitorPresetDevice, EcRamPresetDevice,
                  EcRamMOPresetDevice, IdealizedPresetDevice, GokmenVlasovPresetDevice,
                  PCMPresetDevice)
"""The device presets."""

ALGORITHMS = {"sgd": "sgd", "mp": "mp", "mixed-precision": "mp", "tiki-taka": "ttv1",
              "tt": "ttv1", "ttv1": "ttv1", "ttv2": "ttv2", "chopped-ttv2": "c-ttv2",
              "ttv3": "c-ttv2", "c-ttv2": "c-ttv2", "agad": "agad", "ttv4": "agad"}
"""``build_config``'s algorithm names (aihwkit's aliases) -> the algorithm."""


def _make(spec: Any, what: type, **changes: Any) -> Any:
    """An instance from a class or an instance (copied), with ``changes`` applied."""
    obj = copy.deepcopy(spec) if isinstance(spec, what) else spec()
    for name, value in changes.items():
        setattr(obj, name, value)
    return obj


def build_config(algorithm: str, device: Any,
                 io_parameters: Any = IOParameters, up_parameters: Any = UpdateParameters,
                 construction_seed: int = 0, **kwargs: Any) -> Any:
    """The rpu_config of a training ``algorithm`` on ``device`` (aihwkit's ``build_config``):

    - ``"sgd"``: ``SingleRPUConfig`` (plain pulsed SGD);
    - ``"mp"``/``"mixed-precision"``: ``DigitalRankUpdateRPUConfig(MixedPrecisionCompound)``;
    - ``"tiki-taka"``/``"tt"``/``"ttv1"``: ``UnitCellRPUConfig(TransferCompound)``, transfer
      read without noise and bound management, ``units_in_mbatch``;
    - ``"ttv2"``: ``ChoppedTransferCompound`` with ``in_chop_prob=0``, fast update
      ``desired_bl=5``;
    - ``"c-ttv2"``/``"chopped-ttv2"``/``"ttv3"``: ``ChoppedTransferCompound`` with
      ``fast_lr=0.1``, ``auto_scale``, fast update ``desired_bl=5``;
    - ``"agad"``/``"ttv4"``: ``DynamicTransferCompound`` (simulated by ``runtime/agad.py``).

    ``device``, ``io_parameters`` and ``up_parameters`` are classes or instances (copied);
    ``kwargs`` set further rpu_config fields (e.g. ``mapping``)."""
    name = ALGORITHMS.get(str(algorithm).lower())
    if name is None:
        raise ValueError(f"build_config: unknown algorithm {algorithm!r} (known: "
                         f"{', '.join(sorted(ALGORITHMS))})")
    if not (isinstance(device, (PulsedDevice, IdealDevice)) or (
            isinstance(device, type) and issubclass(device, (PulsedDevice, IdealDevice)))):
        raise TypeError(f"build_config: device must be a device class or instance, got {device!r}")

    def dev(**ch: Any) -> Any:
        return _make(device, (PulsedDevice, IdealDevice), **ch)

    def io(**ch: Any) -> IOParameters:
        return _make(io_parameters, IOParameters, **ch)

    def up(**ch: Any) -> UpdateParameters:
        return _make(up_parameters, UpdateParameters, **ch)

    quiet_read = {"noise_management": NoiseManagementType.NONE,
                  "bound_management": BoundManagementType.NONE}
    if name == "sgd":
        return SingleRPUConfig(device=dev(construction_seed=construction_seed), forward=io(),
                               backward=io(), update=up(), **kwargs)
    if name == "mp":
        return DigitalRankUpdateRPUConfig(
            device=MixedPrecisionCompound(device=dev(construction_seed=construction_seed)),
            forward=io(), backward=io(), update=up(), **kwargs)
    if name == "ttv1":
        compound: Any = TransferCompound(
            unit_cell_devices=[dev(), dev()], transfer_forward=io(**quiet_read),
            transfer_update=up(), units_in_mbatch=True, construction_seed=construction_seed)
        return UnitCellRPUConfig(device=compound, forward=io(), backward=io(), update=up(),
                                 **kwargs)
    one_pulse = {"desired_bl": 1, "update_bl_management": False, "update_management": False}
    if name == "ttv2":
        compound = ChoppedTransferCompound(
            unit_cell_devices=[dev(), dev()], transfer_forward=io(**quiet_read),
            transfer_update=up(**one_pulse), in_chop_prob=0.0, units_in_mbatch=False,
            auto_scale=False, construction_seed=construction_seed)
    elif name == "c-ttv2":
        compound = ChoppedTransferCompound(
            unit_cell_devices=[dev(), dev()], transfer_forward=io(**quiet_read),
            transfer_update=up(**one_pulse), units_in_mbatch=False, fast_lr=0.1,
            auto_scale=True, construction_seed=construction_seed)
    else:
        compound = DynamicTransferCompound(
            unit_cell_devices=[dev(), dev()], transfer_forward=io(),
            transfer_update=up(desired_bl=1, update_bl_management=True,
                               update_management=True),
            auto_scale=True, fast_lr=0.1, units_in_mbatch=False,
            construction_seed=construction_seed)
    return UnitCellRPUConfig(device=compound, forward=io(), backward=io(),
                             update=up(desired_bl=5), **kwargs)
