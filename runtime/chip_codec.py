"""The compact encoding of a noise model and its conductance converter that ``analog::device_chip``
takes: ``(model_kind, model_params, converter_kind, converter_params)``, two ints and two lists
of floats, which the C++ kernel (``csrc/device_chip.cpp``) reads directly and the reference
kernel (``chip_ops.device_chip_reference``) decodes back into a model.

``encode`` resolves what a read at ``t_inference`` needs (the defaults that depend on other
fields, the coefficient rows of the tables keyed by time or acceptance range, the polynomial's
``g_max`` reference); ``decode`` rebuilds a model that computes the same chip bit for bit (the
same fields; a table keeps only the rows the read uses). The layouts, per kind (``n``/``m``:
the length of the list that follows):

=======  ==========================================================================================
model 0  StateIndependent: g_norm, prog_noise_scale, nu_mean, nu_std, drift_scale, t_0,
         read_noise_scale, t_read, n, prog_coeff[n]
model 1  CustomDriftPCMLike: g_norm, reference, prog_noise_scale, drift_scale, t_0,
         read_noise_scale, t_read, n, prog_coeff[n], m, g_lst[m], nu_mean_lst[m], nu_std_lst[m]
model 2  Hermes: g_norm, reference, num_devices, prog_noise_scale, drift_scale, t_0,
         read_noise_scale, t_read, n, prog_coeff[n]
model 3  ReRamWan2022: g_norm, reference, noise_scale, t_prog, n, coeff_prog[n], t_read_key
         (0: no read row), n2, coeff_read[n2]
model 4  ReRamCMO: g_min, g_max, acceptance_range, prog_noise_scale, drift_scale,
         read_noise_scale, decay_mean, decay_std_0, decay_std_1, K, t_read, n, coeff[n]
conv 0   SinglePair: g_min, g_max
conv 1   NPair (and DualPair): g_min, g_max, f_lst[...]
conv 2   CustomPair: g_min, g_max, pairs, levels, f_lst[pairs], g_lst[2 * pairs][levels]
conv 3   SingleDevice: g_min, g_max
=======  ==========================================================================================

``g_norm`` is the model's ``g_max_value`` (the converter's largest conductance), by which the
polynomials and the relative conductances are normalised.
"""

from __future__ import annotations

import functools

from .config.converters import (
    ConductanceConverter,
    CustomPairConductanceConverter,
    DualPairConductanceConverter,
    NPairConductanceConverter,
    SingleDeviceConductanceConverter,
    SinglePairConductanceConverter,
)
from .config.noise_base import NoiseModel
from .config.noise_pcm import (
    HERMES_DEFAULTS,
    CustomDriftPCMLikeNoiseModel,
    HermesNoiseModel,
    StateIndependentNoiseModel,
)
from .config.noise_reram import ReRamCMONoiseModel, ReRamWan2022NoiseModel

#: Model kinds, in code order.
MODEL_KINDS: tuple[type[NoiseModel], ...] = (
    StateIndependentNoiseModel, CustomDriftPCMLikeNoiseModel, HermesNoiseModel,
    ReRamWan2022NoiseModel, ReRamCMONoiseModel)
#: Converter kinds, in code order (``DualPairConductanceConverter`` is an N-pair one).
CONVERTER_KINDS: dict[type[ConductanceConverter], int] = {
    SinglePairConductanceConverter: 0, NPairConductanceConverter: 1,
    DualPairConductanceConverter: 1, CustomPairConductanceConverter: 2,
    SingleDeviceConductanceConverter: 3}

Encoded = tuple[int, list[float], int, list[float]]


def _floats(values) -> list[float]:  # noqa: ANN001 - any iterable of numbers
    return [float(v) for v in values]


def _counted(values) -> list[float]:  # noqa: ANN001
    vals = _floats(values)
    return [float(len(vals)), *vals]


def encode_converter(conv: ConductanceConverter) -> tuple[int, list[float]]:
    """``(converter_kind, converter_params)`` of a conductance converter."""
    kind = CONVERTER_KINDS.get(type(conv))
    if kind is None:
        raise ValueError(f"analog::device_chip: no encoding for the converter "
                         f"{type(conv).__name__}")
    params = [float(conv.g_min), float(conv.g_max)]  # type: ignore[attr-defined]
    if kind == 1:
        params += _floats(conv.f_lst)  # type: ignore[attr-defined]
    elif kind == 2:
        assert isinstance(conv, CustomPairConductanceConverter)
        params += [float(len(conv.f_lst)), float(len(conv.g_lst[0])), *_floats(conv.f_lst)]
        for row in conv.g_lst:
            params += _floats(row)
    return kind, params


def encode_model(model: NoiseModel, t_inference: float) -> tuple[int, list[float]]:
    """``(model_kind, model_params)`` of ``model`` for a read at ``t_inference`` s (call
    ``model.check_time`` first)."""
    if type(model) not in MODEL_KINDS:
        raise ValueError(f"analog::device_chip: no encoding for the noise model "
                         f"{type(model).__name__}")
    kind = MODEL_KINDS.index(type(model))
    g_norm = model.g_max_value
    if isinstance(model, StateIndependentNoiseModel):
        p = [g_norm, model.prog_noise_scale, model.drift_nu_mean, model.drift_nu_std,
             model.drift_scale, model.t_0, model.read_noise_scale, model.t_read,
             *_counted(model.prog_coeff)]
    elif isinstance(model, CustomDriftPCMLikeNoiseModel):
        table = model.custom_drift_model
        p = [g_norm, model._reference(), model.prog_noise_scale, model.drift_scale, model.t_0,
             model.read_noise_scale, model.t_read, *_counted(model.prog_coeff),
             *_counted(table["g_lst"]), *_floats(table["nu_mean_lst"]),
             *_floats(table["nu_std_lst"])]
    elif isinstance(model, HermesNoiseModel):
        fit_g_max, _, fit_coeff = HERMES_DEFAULTS[model.num_devices]
        coeff = model.prog_coeff if model.prog_coeff is not None else fit_coeff
        ref = model.prog_coeff_g_max_reference
        if ref is None:
            ref = fit_g_max if model.prog_coeff is None else g_norm
        p = [g_norm, ref, model.num_devices, model.prog_noise_scale, model.drift_scale,
             model.effective_t_0, model.read_noise_scale, model.t_read, *_counted(coeff)]
    elif isinstance(model, ReRamWan2022NoiseModel):
        t_prog, c_prog = min(model.coeff_dic)
        read: list[float] = [0.0, 0.0]
        if t_inference > 0:
            read = [float(t_inference), *_counted(dict(model.coeff_dic)[t_inference])]
        p = [g_norm, model.coeff_g_max_reference or g_norm, model.noise_scale, t_prog,
             *_counted(c_prog), *read]
    else:
        assert isinstance(model, ReRamCMONoiseModel)
        table = dict(model.coeff_dict)
        key = model.acceptance_range if model.acceptance_range in table else min(table)
        decay, rd = model.decay_dict, model.read_dict
        p = [model.g_min, model.g_max, key, model.prog_noise_scale, model.drift_scale,
             model.read_noise_scale, decay["mean"][0], decay["std"][0], decay["std"][1],
             rd["K"], rd["t_read"], *_counted(table[key])]
    return kind, _floats(p)


def encode(model: NoiseModel, t_inference: float) -> Encoded:
    """The ``analog::device_chip`` arguments ``(model_kind, model_params, converter_kind,
    converter_params)`` of ``model`` read at ``t_inference`` s."""
    kind, params = encode_model(model, t_inference)
    conv_kind, conv_params = encode_converter(model.converter())
    return kind, params, conv_kind, conv_params


class _Reader:
    """Reads an encoded parameter list front to back, naming the kind on a short list."""

    def __init__(self, params: tuple[float, ...], what: str):
        self.params, self.pos, self.what = params, 0, what

    def take(self, n: int = 1) -> tuple[float, ...]:
        if n < 0 or self.pos + n > len(self.params):
            raise ValueError(f"analog::device_chip: {self.what} parameters too short "
                             f"({len(self.params)} values)")
        out = self.params[self.pos:self.pos + n]
        self.pos += n
        return out

    def one(self) -> float:
        return self.take()[0]

    def counted(self) -> tuple[float, ...]:
        return self.take(int(self.one()))

    def done(self) -> None:
        if self.pos != len(self.params):
            raise ValueError(f"analog::device_chip: {self.what} parameters too long "
                             f"({len(self.params)} values, {self.pos} read)")


def decode_converter(kind: int, params: tuple[float, ...]) -> ConductanceConverter:
    """The converter of ``encode_converter``'s ``(kind, params)``."""
    r = _Reader(params, f"converter kind {kind}")
    g_min, g_max = r.take(2)
    if kind == 0:
        conv: ConductanceConverter = SinglePairConductanceConverter(g_max=g_max, g_min=g_min)
    elif kind == 1:
        conv = NPairConductanceConverter(f_lst=r.take(len(params) - 2), g_max=g_max,
                                         g_min=g_min)
    elif kind == 2:
        pairs, levels = (int(v) for v in r.take(2))
        f_lst = r.take(pairs)
        rows = tuple(r.take(levels) for _ in range(2 * pairs))
        conv = CustomPairConductanceConverter(f_lst=f_lst, g_lst=rows, g_max=g_max, g_min=g_min,
                                              invertibility_test=False)
    elif kind == 3:
        conv = SingleDeviceConductanceConverter(g_max=g_max, g_min=g_min)
    else:
        raise ValueError(f"analog::device_chip: unknown converter kind {kind}")
    r.done()
    return conv


@functools.lru_cache(maxsize=64)
def decode(model_kind: int, model_params: tuple[float, ...], converter_kind: int,
           converter_params: tuple[float, ...]) -> NoiseModel:
    """A model that computes the chip ``encode`` described (bit for bit the same as the
    encoded one)."""
    conv = decode_converter(converter_kind, converter_params)
    r = _Reader(model_params, f"model kind {model_kind}")
    if model_kind == 0:
        g_norm, prog, nu_mean, nu_std, drift, t_0, read, t_read = r.take(8)
        model: NoiseModel = StateIndependentNoiseModel(
            g_converter=conv, g_max=g_norm, prog_coeff=r.counted(), prog_noise_scale=prog,
            drift_nu_mean=nu_mean, drift_nu_std=nu_std, drift_scale=drift, t_0=t_0,
            read_noise_scale=read, t_read=t_read)
    elif model_kind == 1:
        g_norm, ref, prog, drift, t_0, read, t_read = r.take(7)
        coeff = r.counted()
        g_lst = r.counted()
        table = {"g_lst": g_lst, "nu_mean_lst": r.take(len(g_lst)),
                 "nu_std_lst": r.take(len(g_lst))}
        model = CustomDriftPCMLikeNoiseModel(
            custom_drift_model=table, prog_coeff=coeff, g_converter=conv, g_max=g_norm,
            t_read=t_read, t_0=t_0, prog_noise_scale=prog, read_noise_scale=read,
            drift_scale=drift, prog_coeff_g_max_reference=ref)
    elif model_kind == 2:
        _, ref, n_dev, prog, drift, t_0, read, t_read = r.take(8)
        model = HermesNoiseModel(
            prog_coeff=r.counted(), g_converter=conv, num_devices=int(n_dev), t_read=t_read,
            t_0=t_0, prog_noise_scale=prog, read_noise_scale=read, drift_scale=drift,
            prog_coeff_g_max_reference=ref)
    elif model_kind == 3:
        g_norm, ref, scale, t_prog = r.take(4)
        rows = [(t_prog, r.counted())]
        t_read_key = r.one()
        read_coeff = r.counted()
        if t_read_key > 0 and t_read_key != t_prog:
            rows.append((t_read_key, read_coeff))
        model = ReRamWan2022NoiseModel(coeff_dic=tuple(rows), g_converter=conv, g_max=g_norm,
                                       noise_scale=scale, coeff_g_max_reference=ref)
    elif model_kind == 4:
        g_min, g_max, key, prog, drift, read, mean, s0, s1, k, t_read = r.take(11)
        model = ReRamCMONoiseModel(
            coeff_dict=((key, r.counted()),), g_max=g_max, g_min=g_min, prog_noise_scale=prog,
            read_noise_scale=read, drift_scale=drift, decay_dict={"mean": (mean,),
                                                                  "std": (s0, s1)},
            read_dict={"K": k, "t_read": t_read}, acceptance_range=key)
    else:
        raise ValueError(f"analog::device_chip: unknown model kind {model_kind}")
    r.done()
    return model
