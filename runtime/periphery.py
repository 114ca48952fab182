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

from .config.io import IOParameters


class Codes(enum.IntEnum):
    """Base of the integer codes an enum field takes in the kernels."""


class NoiseManagement(Codes):
    """``nm_type`` codes (``IOParameters.noise_management``)."""

    NONE = 0
    ABS_MAX = 1
    CONSTANT = 2
    AVERAGE_ABS_MAX = 3


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


PERIPHERY: tuple[Field, ...] = (
    Field("is_perfect", bool, lambda io: io.is_perfect),
    Field("nm_type", int, _code(NoiseManagement, "noise_management"), NoiseManagement),
    Field("nm_thres", float, lambda io: io.nm_thres),
    Field("inp_bound", float, lambda io: io.inp_bound),
    Field("inp_step", float, lambda io: io.inp_step),
    Field("inp_sto_round", bool, lambda io: io.inp_sto_round),
    Field("inp_noise", float, lambda io: io.inp_noise),
    Field("out_bound", float, lambda io: io.out_bound),
    Field("out_step", float, lambda io: io.out_step),
    Field("out_sto_round", bool, lambda io: io.out_sto_round),
    Field("out_noise", float, lambda io: io.out_noise),
    Field("w_noise_type", int, _code(WeightNoise, "w_noise_type"), WeightNoise),
    Field("w_noise", float, lambda io: io.w_noise),
    Field("bm_rounds", int, lambda io: io.max_bm_rounds),
)
FLOAT_FIELDS: tuple[str, ...] = tuple(f.name for f in PERIPHERY if f.kind is float)
INT_FIELDS: tuple[str, ...] = tuple(f.name for f in PERIPHERY if f.kind is not float)
_FIELDS = {f.name: f for f in PERIPHERY}


class KernelIO(NamedTuple):
    """The packed periphery: the ``io_f`` and ``io_i`` arguments of the forward ops."""

    io_f: list[float]
    io_i: list[int]


def pack_fields(**values: Any) -> KernelIO:
    """Pack kernel field values given by name (every field of ``PERIPHERY``, enum fields as
    codes or members of their ``Codes``)."""
    missing = [f.name for f in PERIPHERY if f.name not in values]
    unknown = sorted(set(values) - set(_FIELDS))
    if missing or unknown:
        raise TypeError(f"periphery fields: missing {missing}, unknown {unknown}")
    return KernelIO([float(values[n]) for n in FLOAT_FIELDS], [int(values[n]) for n in INT_FIELDS])


def kernel_io(io: IOParameters) -> KernelIO:
    """The packed periphery of ``io`` (the forward ops' ``io_f``, ``io_i``)."""
    return pack_fields(**{f.name: f.read(io) for f in PERIPHERY})


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
