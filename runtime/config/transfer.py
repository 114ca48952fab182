"""Unit-cell training tiles (aihwkit 1.2.0's names, defaults and validation): the transfer
compounds and ``UnitCellRPUConfig``.

``UnitCellRPUConfig(device=<compound>)`` holds two device arrays per weight: a *fast* array ``A``
(``unit_cell_devices[0]``) that receives the pulsed SGD update and a *slow* array ``C``
(``unit_cell_devices[1]``) that the forward and backward see (``W = gamma * A + C``; aihwkit's
default ``gamma = 0``: ``W = C``). On a schedule, columns of ``A`` are read by a forward pass
(``transfer_forward``, noise and bound management off) and written into ``C`` by a pulsed update
(``transfer_update``):

- ``TransferCompound`` (Tiki-Taka, Gokmen & Haensch 2020): every ``transfer_every`` updates
  (in mini-batches with ``units_in_mbatch``, else in single vectors) ``n_reads_per_transfer``
  consecutive columns ``a = A e_k`` are read and ``C`` is updated by ``C += lr_t * a e_k^T`` with
  ``lr_t = transfer_lr`` (times the SGD learning rate with ``scale_transfer_lr``).
- ``ChoppedTransferCompound`` (c-TTv2, Rasch et al. 2023): the update of ``A`` is chopped (input
  ``c_i`` and output ``c_j`` signs in {+1, -1}); every read goes into a digital buffer
  ``H += c_i c_j * lr_scale * a``, and where ``|H| >= 1`` the slow device receives
  ``n = clip(trunc(H), +-transfer_update.desired_bl)`` pulses and ``H`` is reduced
  (``forget_buffer``: ``H *= momentum``, else ``H -= (1 - momentum) n``); then the column's input
  chopper flips with probability ``in_chop_prob``.
- ``OneSidedUnitCell``: two devices that are only potentiated, ``W = g+ - g-``, refreshed when
  both near their bounds (simulation: ``runtime/one_sided.py``).
- ``DynamicTransferCompound`` (AGAD, Rasch et al. 2024): c-TTv2 whose buffer accumulates the
  read minus a dynamic reference, the tail-weighted running mean of the previous chopper period
  (simulation: ``runtime/agad.py``, a PyTorch loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ConfigBase, check_bool, check_config, check_int, check_number
from .devices import ConstantStepDevice, PulsedDevice
from .io import IOParameters
from .update import PulseType, TrainingRPUConfigBase, UpdateParameters


def _no_bl_update() -> UpdateParameters:
    """aihwkit's transfer update of the buffered compounds: one pulse per transfer."""
    return UpdateParameters(desired_bl=1, update_bl_management=False, update_management=False)


def _check_devices(obj: ConfigBase, count: int | None = 2) -> None:
    devices = obj.unit_cell_devices
    name = type(obj).__name__
    if isinstance(devices, tuple):
        devices = list(devices)
        object.__setattr__(obj, "unit_cell_devices", devices)
    if not isinstance(devices, list) or not all(isinstance(d, PulsedDevice) for d in devices):
        raise TypeError(f"{name}.unit_cell_devices must be a list of pulsed devices "
                        f"(PulsedDevice subclasses), got {devices!r}")
    if count is not None and len(devices) != count:
        raise ValueError(f"{name}.unit_cell_devices: this simulator supports exactly {count} "
                         f"devices (fast, slow), got {len(devices)}")


@dataclass
class TransferCompound(ConfigBase):
    """Tiki-Taka (v1): SGD on the fast array, periodic transfer of its columns into the slow
    array (aihwkit's ``TransferCompound``; see the module docstring)."""

    unit_cell_devices: list[PulsedDevice] = field(
        default_factory=lambda: [ConstantStepDevice(), ConstantStepDevice()])
    """The fast and the slow device (exactly two; aihwkit's default is an empty list)."""
    construction_seed: int = 0
    """Seed of the devices' device-to-device draw (0: each device's own seed, else fresh)."""
    gamma: float = 0.0
    """Weight of the fast array in the visible weight ``W = gamma * A + C``."""
    gamma_vec: list[float] = field(default_factory=list)
    """Explicit weights ``[g_A, g_C]`` (replace ``gamma``; ``g_C`` must not be 0)."""
    transfer_every: float = 1.0
    """Transfer period, in mini-batches (``units_in_mbatch``) or single updates; 0: never."""
    no_self_transfer: bool = True
    """The slow device does not transfer onto itself (must stay True)."""
    transfer_every_vec: list[float] = field(default_factory=list)
    """Explicit periods per device (``[every_A, every_C]``); replaces ``transfer_every``."""
    units_in_mbatch: bool = True
    """``transfer_every`` counts mini-batches (``ceil(transfer_every * batch)`` vectors)."""
    n_reads_per_transfer: int = 1
    """Consecutive columns read and written per transfer (cycling over the columns)."""
    transfer_columns: bool = True
    """Read columns by a forward pass (must stay True: row reads are not simulated)."""
    with_reset_prob: float = 0.0
    """Reset of the read columns (not simulated: must be 0)."""
    random_selection: bool = False
    """Start each transfer at a random column instead of the next one."""
    fast_lr: float = 1.0
    """Learning rate of the fast array's update (0: the SGD learning rate)."""
    transfer_lr: float = 1.0
    """Learning rate of the transfer's update of the slow array."""
    transfer_lr_vec: list[float] = field(default_factory=list)
    """Explicit transfer learning rates per device (replaces ``transfer_lr``)."""
    scale_transfer_lr: bool = True
    """Multiply ``transfer_lr`` by the current SGD learning rate."""
    scale_fast_lr: bool = True
    """Multiply ``fast_lr`` by the current SGD learning rate."""
    transfer_forward: IOParameters = field(default_factory=IOParameters)
    """Periphery of the transfer read (its noise and bound management are always off)."""
    transfer_update: UpdateParameters = field(default_factory=UpdateParameters)
    """Pulse trains of the transfer's update of the slow array."""

    def __post_init__(self) -> None:
        _check_devices(self)
        check_int(self, "construction_seed", min_value=0)
        for name in ("gamma", "transfer_every", "with_reset_prob", "fast_lr", "transfer_lr"):
            check_number(self, name, min_value=0.0)
        check_int(self, "n_reads_per_transfer", min_value=1)
        for name in ("no_self_transfer", "units_in_mbatch", "transfer_columns",
                     "random_selection", "scale_transfer_lr", "scale_fast_lr"):
            check_bool(self, name)
        check_config(self, "transfer_forward", IOParameters)
        check_config(self, "transfer_update", UpdateParameters)
        for name in ("gamma_vec", "transfer_every_vec", "transfer_lr_vec"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, list) or len(value) not in (0, 2) or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
                    for v in value):
                raise ValueError(f"{type(self).__name__}.{name} must be empty or two numbers "
                                 f">= 0 (one per device), got {value!r}")
        if self.gamma_vec and self.gamma_vec[1] == 0:
            raise ValueError(f"{type(self).__name__}.gamma_vec: the slow device's weight must "
                             "not be 0")
        if not self.no_self_transfer:
            raise ValueError(f"{type(self).__name__}.no_self_transfer=False is not supported")
        if not self.transfer_columns:
            raise ValueError(f"{type(self).__name__}.transfer_columns=False (row reads) is not "
                             "supported")
        if self.with_reset_prob != 0:
            raise ValueError(f"{type(self).__name__}.with_reset_prob > 0 is not supported")
        if self.transfer_forward.inp_noise > 0:
            raise ValueError(f"{type(self).__name__}.transfer_forward.inp_noise > 0 is not "
                             "supported by the transfer read")

    # ----------------------------------------------------------------- derived
    @property
    def gammas(self) -> tuple[float, float]:
        """``(g_A, g_C)``: the visible weight is ``g_A * A + g_C * C``."""
        if self.gamma_vec:
            return float(self.gamma_vec[0]), float(self.gamma_vec[1])
        return float(self.gamma), 1.0

    @property
    def fully_hidden(self) -> bool:
        """The visible weight is the slow array itself (``g_A = 0``, ``g_C = 1``)."""
        return self.gammas == (0.0, 1.0)

    @property
    def every(self) -> float:
        """The fast array's transfer period (``transfer_every_vec[0]`` or ``transfer_every``)."""
        return float(self.transfer_every_vec[0]) if self.transfer_every_vec \
            else float(self.transfer_every)

    @property
    def lr_transfer(self) -> float:
        """The transfer learning rate of the fast array (before ``scale_transfer_lr``)."""
        return float(self.transfer_lr_vec[0]) if self.transfer_lr_vec else float(self.transfer_lr)

    def fast_count_lr(self, lr: float) -> float:
        """The learning rate of the fast array's pulsed update for SGD learning rate ``lr``."""
        if self.fast_lr > 0:
            return self.fast_lr * lr if self.scale_fast_lr else self.fast_lr
        return lr


@dataclass
class ChoppedTransferCompound(TransferCompound):
    """c-TTv2: chopped fast updates, a digital buffer between the transfer read and the slow
    array (aihwkit's ``ChoppedTransferCompound``; see the module docstring). The learning rates:
    ``count_lr = fast_lr`` (``* lr`` with ``scale_fast_lr``; with ``auto_scale``
    ``* desired_bl * dw_min_A / (m_x m_d)``, ``m_x``, ``m_d`` running averages of max|x|,
    max|d|), ``lr_scale = transfer_lr (* lr) / (buffer_granularity * dw_min_A)`` (with
    ``auto_granularity``: ``* auto_granularity / (in_size * transfer_every)``; with
    ``correct_gradient_magnitudes``: ``* dw_min_A / dw_min_C / count_lr``); the slow array is
    written with ``lr = step * dw_min_C``."""

    in_chop_prob: float = 0.1
    """Probability that a column's input chopper flips after its read."""
    in_chop_random: bool = True
    """Random flips (else regular: every ``max(ceil(1 / in_chop_prob), 2)`` sweeps)."""
    out_chop_prob: float = 0.0
    """Probability that a row's output chopper flips after each full sweep of the columns."""
    buffer_granularity: float = 1.0
    """Buffer threshold, in units of the fast device's ``dw_min``."""
    auto_granularity: float = 0.0
    """If > 0: scale the buffer granularity by ``auto_granularity / (in_size *
    transfer_every)``."""
    step: float = 1.0
    """Pulse size of the slow array's write, in units of its ``dw_min``."""
    momentum: float = 0.0
    """Fraction of the buffer kept after a transfer (``forget_buffer``) or not subtracted."""
    forget_buffer: bool = True
    """After a transfer keep ``momentum * H`` (else subtract ``(1 - momentum) * n``)."""
    no_buffer: bool = False
    """No buffer: every read is compared with the threshold alone."""
    units_in_mbatch: bool = False
    """``transfer_every`` counts mini-batches (else single updates)."""
    auto_scale: bool = False
    """Scale the fast update by running averages of max|x| and max|d| (see above)."""
    auto_momentum: float = 0.99
    """Momentum of those running averages (``tau = (1 - auto_momentum) / batch``)."""
    correct_gradient_magnitudes: bool = False
    """Divide the transfer scale by ``count_lr`` and by the slow/fast granularity ratio."""
    fast_lr: float = 1.0
    """The fast array's learning rate (absolute unless ``scale_fast_lr``)."""
    scale_fast_lr: bool = False
    """Multiply ``fast_lr`` by the current SGD learning rate."""
    transfer_update: UpdateParameters = field(default_factory=_no_bl_update)
    """Pulse trains of the slow array's write (aihwkit: one pulse, no BL/update management)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("in_chop_prob", "out_chop_prob"):
            check_number(self, name, min_value=0.0)
            if getattr(self, name) > 1:
                raise ValueError(f"{type(self).__name__}.{name} must be in [0, 1], "
                                 f"got {getattr(self, name)!r}")
        for name in ("buffer_granularity", "auto_granularity", "momentum"):
            check_number(self, name, min_value=0.0)
        check_number(self, "step", positive=True)
        check_number(self, "auto_momentum", min_value=0.0)
        if self.auto_momentum >= 1:
            raise ValueError(f"{type(self).__name__}.auto_momentum must be < 1, "
                             f"got {self.auto_momentum!r}")
        for name in ("in_chop_random", "forget_buffer", "no_buffer", "auto_scale",
                     "correct_gradient_magnitudes"):
            check_bool(self, name)
        if self.n_reads_per_transfer != 1 or self.random_selection:
            raise ValueError(f"{type(self).__name__}: needs n_reads_per_transfer=1 and "
                             "random_selection=False (as aihwkit)")
        up = self.transfer_update
        if up.desired_bl > 1 and (up.update_bl_management or up.update_management):
            raise ValueError(f"{type(self).__name__}.transfer_update: BL or update management "
                             "with desired_bl > 1 is not supported (the write would depend on "
                             "the whole column)")


@dataclass
class DynamicTransferCompound(ChoppedTransferCompound):
    """AGAD (aihwkit's ``DynamicTransferCompound``): the transfer compares the mean read of the
    current chopper period with the previous one (simulated as ``runtime/agad.py`` describes;
    aihwkit's ``experimental_fast_lr_feedback`` is not exposed)."""

    in_chop_random: bool = False
    """Regular chopper periods (aihwkit's AGAD default)."""
    experimental_correct_accumulation: bool = False
    """Correct the gradient accumulation for the multiple reads."""
    buffer_cap: float = 0.0
    """Buffer capacity in units of the transfer's ``desired_bl`` (0: none)."""
    tail_weightening: float = 5.0
    """Weight of the tail of the chopper period in the mean read."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bool(self, "experimental_correct_accumulation")
        check_number(self, "buffer_cap", min_value=0.0)
        check_number(self, "tail_weightening", min_value=0.0)


@dataclass
class OneSidedUnitCell(ConfigBase):
    """Two one-directional devices per weight (``W = G+ - G-``), refreshed when saturated
    (aihwkit's ``OneSidedUnitCell``; simulated as ``runtime/one_sided.py`` describes; not with
    ``ExpStepDevice`` or ``reset_dtod > 0``)."""

    unit_cell_devices: list[PulsedDevice] = field(
        default_factory=lambda: [ConstantStepDevice()])
    """``[g-, g+]``, or one device drawn twice (aihwkit's order: ``g+`` is the second)."""
    construction_seed: int = 0
    """Seed of the devices' device-to-device draw."""
    refresh_every: int = 0
    """Refresh period in single vectors (``units_in_mbatch``: in mini-batches); 0: never."""
    units_in_mbatch: bool = True
    """``refresh_every`` counts mini-batches."""
    refresh_upper_thres: float = 0.75
    """Refresh where the larger device exceeds this fraction of its ``|w_max|`` ..."""
    refresh_lower_thres: float = 0.25
    """... and the smaller one this fraction."""
    refresh_forward: IOParameters = field(default_factory=IOParameters)
    """Periphery of the refresh read (its noise and bound management are off)."""
    refresh_update: UpdateParameters = field(default_factory=UpdateParameters)
    """Pulse trains of the refresh write of the difference (learning rate 1)."""
    copy_inverted: bool = False
    """Invert ``g+`` (``unit_cell_devices[1]``): swap its up and down steps and mirror its
    bounds (aihwkit's ``copyInvertDeviceParameter``)."""

    def __post_init__(self) -> None:
        _check_devices(self, None)
        if len(self.unit_cell_devices) not in (1, 2):
            raise ValueError("OneSidedUnitCell.unit_cell_devices: needs 1 or 2 devices, got "
                             f"{len(self.unit_cell_devices)}")
        check_int(self, "construction_seed", min_value=0)
        check_int(self, "refresh_every", min_value=0)
        for name in ("refresh_upper_thres", "refresh_lower_thres"):
            check_number(self, name, min_value=0.0)
        for name in ("units_in_mbatch", "copy_inverted"):
            check_bool(self, name)
        check_config(self, "refresh_forward", IOParameters)
        check_config(self, "refresh_update", UpdateParameters)


UNIT_CELL_TYPES = (TransferCompound, ChoppedTransferCompound, DynamicTransferCompound,
                   OneSidedUnitCell)
"""The compounds a ``UnitCellRPUConfig`` accepts."""
SIMULATED_UNIT_CELLS = (TransferCompound, ChoppedTransferCompound, DynamicTransferCompound,
                        OneSidedUnitCell)
"""The compounds a training tile simulates (the others are configs only)."""


@dataclass
class UnitCellRPUConfig(TrainingRPUConfigBase):
    """A training tile of a unit cell of several devices per cross-point (aihwkit's
    ``UnitCellRPUConfig``): ``device`` is a transfer compound or a ``OneSidedUnitCell``;
    ``update`` drives the fast array's pulsed update."""

    device: TransferCompound | OneSidedUnitCell = field(default_factory=TransferCompound)
    """The compound (one of ``UNIT_CELL_TYPES``)."""

    def __post_init__(self) -> None:
        check_config(self, "device", UNIT_CELL_TYPES)
        self._check_training_fields()
        if isinstance(self.device, TransferCompound) and self.update.pulse_type in (
                PulseType.NONE, PulseType.NONE_WITH_DEVICE):
            raise ValueError("UnitCellRPUConfig.update.pulse_type: the fast array's update "
                             "must be pulsed (not None / NoneWithDevice)")
