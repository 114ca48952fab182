"""The periphery spec (``runtime/periphery.py``): packing an ``IOParameters`` for the kernels."""

from __future__ import annotations

import pytest
from analog_compiler.runtime import periphery
from analog_compiler.runtime.periphery import NoiseManagement, WeightNoise

import analog_compiler as ac


def test_kernel_io_packs_every_field_by_name() -> None:
    io = ac.IOParameters(is_perfect=False, noise_management="AVERAGE_ABS_MAX", nm_thres=0.5,
                         inp_bound=2.0, inp_res=1 / 62, inp_sto_round=True, inp_noise=0.01,
                         out_bound=8.0, out_res=1 / 254, out_sto_round=True, out_noise=0.03,
                         w_noise=0.02, w_noise_type="PCM_READ")
    p = periphery.unpack(*periphery.kernel_io(io))
    assert p.nm_type == NoiseManagement.AVERAGE_ABS_MAX and p.w_noise_type == WeightNoise.PCM_READ
    assert (p.nm_thres, p.inp_bound, p.inp_noise, p.out_bound) == (0.5, 2.0, 0.01, 8.0)
    assert p.inp_step == io.inp_step and p.out_step == io.out_step
    assert p.inp_sto_round is True and p.out_sto_round is True and p.is_perfect is False
    assert p.bm_rounds == io.max_bm_rounds and (p.out_noise, p.w_noise) == (0.03, 0.02)


def test_packing_is_two_typed_lists_in_spec_order() -> None:
    packed = periphery.kernel_io(ac.IOParameters())
    assert len(packed.io_f) == len(periphery.FLOAT_FIELDS)
    assert len(packed.io_i) == len(periphery.INT_FIELDS)
    assert all(type(v) is float for v in packed.io_f)
    assert all(type(v) is int for v in packed.io_i)
    names = [f.name for f in periphery.PERIPHERY]
    assert sorted(names) == sorted(periphery.FLOAT_FIELDS + periphery.INT_FIELDS)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("member", list(ac.NoiseManagementType))
def test_every_accepted_noise_management_has_a_code(member: ac.NoiseManagementType) -> None:
    try:
        io = ac.IOParameters(noise_management=member, nm_thres=1.0)
    except ValueError:
        return  # rejected by the config: no kernel needed
    code = periphery.unpack(*periphery.kernel_io(io)).nm_type
    assert NoiseManagement(code).name == member.name


@pytest.mark.parametrize("member", list(ac.WeightNoiseType))
def test_every_weight_noise_type_has_a_code(member: ac.WeightNoiseType) -> None:
    code = periphery.unpack(*periphery.kernel_io(ac.IOParameters(w_noise_type=member))).w_noise_type
    assert WeightNoise(code).name == member.name


def test_pack_fields_names_missing_and_unknown_fields() -> None:
    fields = {f.name: 0 for f in periphery.PERIPHERY}
    assert periphery.pack_fields(**fields) == periphery.KernelIO(
        [0.0] * len(periphery.FLOAT_FIELDS), [0] * len(periphery.INT_FIELDS))
    del fields["out_noise"]
    with pytest.raises(TypeError, match=r"missing \['out_noise'\], unknown \['bogus'\]"):
        periphery.pack_fields(**fields, bogus=1)


def test_unpack_rejects_a_wrong_count() -> None:
    with pytest.raises(ValueError, match="expected .* floats"):
        periphery.unpack([1.0], [0])


def test_layout_lists_fields_and_codes() -> None:
    text = periphery.layout()
    assert text.startswith("float:" + ",".join(periphery.FLOAT_FIELDS) + ";int:")
    assert "nm_type:NONE=0,ABS_MAX=1,CONSTANT=2,AVERAGE_ABS_MAX=3" in text
    assert "w_noise_type:NONE=0,ADDITIVE_CONSTANT=1,PCM_READ=2" in text
