"""The tile periphery as one ordered spec: every setting the analog forward kernels read.

The kernels of ``analog::tile_forward`` and ``analog::tile_conv2d`` take the periphery packed
into two arguments, ``float[] io_f`` and ``int[] io_i`` (booleans and enum codes are ints), in
the order of ``PERIPHERY`` below. Everything else follows from this table: the packing of an
``IOParameters`` (``kernel_io``), the named view the reference kernel reads (``unpack``), the
enum codes, and the layout string that the compiled library must reproduce before it may
register its kernels (``layout``; the C++ side writes its own from the ``ANALOG_IO_*`` lists in
``csrc/tile_periphery.h``).

Adding a periphery setting: one ``Field`` here (and its line in ``csrc/tile_periphery.h``), then
the code that uses it. Nothing counts arguments by position any more.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .config.enums import BoundManagementType, NoiseManagementType
from .config.io import IOParameters


class Codes(enum.IntEnum):
    """Base of the integer codes an enum field takes in the kernels."""


class NoiseManagement(Codes):
    """``nm_type`` codes (``IOParameters.noise_management``)."""

    NONE = 0
    ABS_MAX = 1
    CONSTANT = 2
    AVERAGE_ABS_MAX = 3
    MAX = 4
    ABS_MAX_NP_SUM = 5


class BoundManagement(Codes):
    """``bm_type`` codes (``IOParameters.bound_management``)."""

    NONE = 0
    ITERATIVE = 1
    ITERATIVE_WORST_CASE = 2
    SHIFT = 3


class WeightNoise(Codes):
    """``w_noise_type`` codes (``IOParameters.w_noise_type``)."""

    NONE = 0
    ADDITIVE_CONSTANT = 1
    PCM_READ = 2


def _code(codes: type[Codes], attr: str) -> Callable[[IOParameters], int]:
    def read(io: IOParameters) -> int:
        member = getattr(io, attr)
        if member.name not in codes.__members__:
            raise ValueError(f"IOParameters.{attr}={member.name} has no kernel")
        return int(codes[member.name])
    return read


@dataclass(frozen=True)
class Field:
    """One periphery setting of the kernels."""

    name: str
    """Name in the kernels (the reference reads ``p.<name>``, C++ ``io.<name>``)."""
    kind: type
    """``float`` (packed into ``io_f``), ``int`` or ``bool`` (packed into ``io_i``)."""
    read: Callable[[IOParameters], Any]
    """Its value for an ``IOParameters``."""
    codes: type[Codes] | None = None
    """For enum fields: the integer codes."""
    default: Any = None
    """The value ``pack_fields`` uses when the field is not given (None: it must be given): the
    fields added after the first spec default to "off", so hand-written kernel arguments (tests,
    benchmarks) mean what they meant before."""


def _bm_type(io: IOParameters) -> int:
    """The kernel's bound management: none without an output bound (nothing can clip), and
    ITERATIVE_WORST_CASE under ABS_MAX_NP_SUM is ITERATIVE (its 2nd round would change
    nothing: aihwkit skips it)."""
    if io.out_bound <= 0:
        return BoundManagement.NONE
    if io.bound_management is BoundManagementType.ITERATIVE_WORST_CASE \
            and io.noise_management is NoiseManagementType.ABS_MAX_NP_SUM:
        return BoundManagement.ITERATIVE
    return _code(BoundManagement, "bound_management")(io)


def _bm_rounds(io: IOParameters) -> int:
    """Redo rounds after the first pass: ITERATIVE halves ``max_bm_rounds`` times;
    ITERATIVE_WORST_CASE first redoes at reduction 1 with the ABS_MAX_NP_SUM scale, then halves
    as many times (aihwkit resets the reduction to 1 in that round)."""
    return io.max_bm_rounds + int(_bm_type(io) == BoundManagement.ITERATIVE_WORST_CASE)


PERIPHERY: tuple[Field, ...] = (
    Field("is_perfect", bool, lambda io: io.is_perfect),
    Field("nm_type", int, _code(NoiseManagement, "noise_management"), NoiseManagement),
    Field("nm_thres", float, lambda io: io.nm_thres),
    Field("nm_assumed_wmax", float, lambda io: io.nm_assumed_wmax, default=0.6),
    Field("inp_bound", float, lambda io: io.inp_bound),
    Field("inp_step", float, lambda io: io.inp_step),
    Field("inp_sto_round", bool, lambda io: io.inp_sto_round),
    Field("inp_noise", float, lambda io: io.inp_noise),
    Field("out_bound", float, lambda io: io.out_bound),
    Field("out_step", float, lambda io: io.out_step),
    Field("out_sto_round", bool, lambda io: io.out_sto_round),
    Field("out_noise", float, lambda io: io.out_noise),
    Field("out_noise_std", float, lambda io: io.out_noise_std, default=0.0),
    # the chip whose column noise ``out_noise_std`` draws: the tile array's program_seed
    # (``with_chip_seed``); 0 for an IOParameters alone
    Field("chip_seed", int, lambda io: 0, default=0),
    Field("w_noise_type", int, _code(WeightNoise, "w_noise_type"), WeightNoise),
    Field("w_noise", float, lambda io: io.w_noise),
    Field("ir_drop", float, lambda io: io.ir_drop, default=0.0),
    Field("ir_drop_g_ratio", float, lambda io: io.ir_drop_g_ratio, default=1.0 / 0.35 / 5e-6),
    Field("bm_type", int, _bm_type, BoundManagement, default=BoundManagement.ITERATIVE),
    Field("bm_rounds", int, _bm_rounds),
    Field("bm_neg", bool, lambda io: io.bm_test_negative_bound, default=True),
    Field("max_bm_res", float, lambda io: io.max_bm_res, default=0.25),
)
FLOAT_FIELDS: tuple[str, ...] = tuple(f.name for f in PERIPHERY if f.kind is float)
INT_FIELDS: tuple[str, ...] = tuple(f.name for f in PERIPHERY if f.kind is not float)
_FIELDS = {f.name: f for f in PERIPHERY}


class KernelIO(NamedTuple):
    """The packed periphery: the ``io_f`` and ``io_i`` arguments of the forward ops."""

    io_f: list[float]
    io_i: list[int]


def pack_fields(**values: Any) -> KernelIO:
    """Pack kernel field values given by name (every field of ``PERIPHERY`` that has no
    ``default``, enum fields as codes or members of their ``Codes``)."""
    values = {**{f.name: f.default for f in PERIPHERY if f.default is not None}, **values}
    missing = [f.name for f in PERIPHERY if f.name not in values]
    unknown = sorted(set(values) - set(_FIELDS))
    if missing or unknown:
        raise TypeError(f"periphery fields: missing {missing}, unknown {unknown}")
    return KernelIO([float(values[n]) for n in FLOAT_FIELDS], [int(values[n]) for n in INT_FIELDS])


def kernel_io(io: IOParameters) -> KernelIO:
    """The packed periphery of ``io`` (the forward ops' ``io_f``, ``io_i``)."""
    return pack_fields(**{f.name: f.read(io) for f in PERIPHERY})


_CHIP_SEED = INT_FIELDS.index("chip_seed")


_OUT_NOISE_STD = FLOAT_FIELDS.index("out_noise_std")


def with_chip_seed(kio: KernelIO, seed: int | Any) -> KernelIO:
    """``kio`` for the chip ``seed`` (an int or a 0-d tensor: what ``out_noise_std``'s column
    noise is drawn from); ``kio`` itself when it has no column noise (the seed is not read)."""
    if kio.io_f[_OUT_NOISE_STD] <= 0:
        return kio
    io_i = list(kio.io_i)
    io_i[_CHIP_SEED] = int(seed)
    return KernelIO(kio.io_f, io_i)


class Periphery:
    """Named, typed view of a packed periphery (what the reference kernel reads)."""

    __slots__ = FLOAT_FIELDS + INT_FIELDS

    def __init__(self, io_f: list[float], io_i: list[int]) -> None:
        if len(io_f) != len(FLOAT_FIELDS) or len(io_i) != len(INT_FIELDS):
            raise ValueError(f"packed periphery: expected {len(FLOAT_FIELDS)} floats and "
                             f"{len(INT_FIELDS)} ints, got {len(io_f)} and {len(io_i)}")
        for name, value in zip(FLOAT_FIELDS, io_f):
            setattr(self, name, float(value))
        for name, value in zip(INT_FIELDS, io_i):
            setattr(self, name, _FIELDS[name].kind(value))

    def __repr__(self) -> str:
        return "Periphery(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


def unpack(io_f: list[float], io_i: list[int]) -> Periphery:
    """The named view of the packed ``io_f``, ``io_i``."""
    return Periphery(io_f, io_i)


def layout() -> str:
    """The packing as text, enum codes included: ``float:a,b;int:c,d;nm_type:NONE=0,...``. The
    compiled library registers its kernels only when its own layout string is this one."""
    parts = ["float:" + ",".join(FLOAT_FIELDS), "int:" + ",".join(INT_FIELDS)]
    for f in PERIPHERY:
        if f.codes is not None:
            parts.append(f.name + ":" + ",".join(f"{m.name}={int(m)}" for m in f.codes))
    return ";".join(parts)
