"""Record (``--save``) or compare (``--compare``) the outputs of the analog kernels over a matrix
of periphery settings, layouts and dtypes: the check that a refactor of the op layer leaves every
output bit-identical.

Both the C++ kernels (through the dispatcher) and the reference kernels (called directly) run on
the same seeded problems; ``--compare FILE`` reports every output that is not bit-identical to the
recording. Run ``--save`` on the old commit and ``--compare`` on the new one, on one machine.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any

import torch
from analog_compiler.runtime import reference

BASE = dict(is_perfect=False, nm_type=1, nm_thres=0.0, inp_bound=1.0, inp_step=2 / 126,
            inp_sto_round=False, inp_noise=0.0, out_bound=12.0, out_step=24 / 510,
            out_sto_round=False, out_noise=0.06, w_noise_type=0, w_noise=0.0, bm_rounds=12)
SETTINGS = {
    "default": {}, "noise_off": dict(out_noise=0.0), "no_adc": dict(out_step=0.0),
    "nm_none": dict(nm_type=0, inp_bound=4.0), "nm_constant": dict(nm_type=2, nm_thres=2.0),
    "nm_avg": dict(nm_type=3), "nm_cap": dict(nm_thres=0.5),
    "bm_clip": dict(out_bound=1.5, out_step=3 / 510), "bm_one": dict(out_bound=0.8, bm_rounds=1),
    "bm_off": dict(out_bound=1.5, bm_rounds=0), "no_bound": dict(out_bound=0.0, out_step=0.01),
    "pcm": dict(w_noise_type=2, w_noise=0.05), "additive": dict(w_noise_type=1, w_noise=0.05),
    "sto": dict(inp_sto_round=True, out_sto_round=True, inp_noise=0.02),
    "perfect": dict(is_perfect=True),
    "nm_max": dict(nm_type=4), "nm_np_sum": dict(nm_type=5),
    "bm_worst": dict(bm_type=2, out_bound=1.5, out_step=3 / 510),
    "bm_shift": dict(bm_type=3, out_bound=1.5, out_step=3 / 510),
    "ir_drop": dict(ir_drop=1.0, ir_drop_g_ratio=2000.0),
    "col_noise": dict(out_noise_std=0.3, chip_seed=5),
}
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
LAYOUTS = {"split": ((150, 150), (70, 60), 1), "groups": ((40, 39), (20,), 3),
           "uneven": ((120, 119, 119), (33, 32, 32), 1)}
CONV_DTYPES = (torch.float32, torch.bfloat16)
CONV = [(4, 6, 1, (3, 3), (1, 1), (1, 1), (1, 1), 7, 7, [20, 16], [4, 2]),
        (6, 4, 2, (3, 2), (2, 1), (1, 2), (2, 3), 9, 8, [9, 9], [2])]


def _call(op: Any, head: list, io: dict, tail: list) -> Any:
    try:  # the packed periphery (one spec) ...
        from analog_compiler.runtime import periphery
        return op(*head, *periphery.pack_fields(**io), *tail)
    except ImportError:  # ... or one argument per field (before the spec)
        return op(*head, *io.values(), *tail)


def outputs() -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for (name, kw), (lname, (ins, outs, groups)), dtype, scaled in itertools.product(
            SETTINGS.items(), LAYOUTS.items(), DTYPES, (False, True)):
        g = torch.Generator().manual_seed(7)
        n = 37
        x = torch.randn(n, groups * sum(ins), generator=g, dtype=dtype)
        x[3] = 0
        x[5, :] = 0
        x[5, 2] = 1.5  # one-hot vector
        w = torch.randn(groups, sum(outs), sum(ins), generator=g, dtype=dtype) * 0.12
        sc = torch.rand(groups, len(ins), sum(outs), generator=g, dtype=dtype) + 0.5
        b = torch.randn(groups * sum(outs), generator=g, dtype=dtype)
        head = [x, w, sc if scaled else None, b, torch.tensor(123), list(ins), list(outs)]
        io = {**BASE, **kw}
        key = f"fwd/{name}/{lname}/{dtype}/{scaled}"
        for impl, op in (("cpp", torch.ops.analog.tile_forward), ("ref", reference.tile_forward)):
            y, m = _call(op, head, io, [True])
            out[f"{key}/{impl}"], out[f"{key}/{impl}/mask"] = y, m
    for (name, kw), gi, scaled, dtype in itertools.product(
            SETTINGS.items(), range(len(CONV)), (False, True), CONV_DTYPES):
        cin, cout, groups, k, d, s, p, h, wd, ins, outs = CONV[gi]
        g = torch.Generator().manual_seed(3)
        x = torch.randn(2, cin, h, wd, generator=g) * 2
        w = torch.randn(groups, cout // groups, cin // groups * k[0] * k[1], generator=g) * 0.3
        sc = torch.rand(groups, len(ins), cout // groups, generator=g) + 0.5
        b = torch.randn(cout, generator=g)
        x, w, sc, b = (t.to(dtype) for t in (x, w, sc, b))
        head = [x, w, sc if scaled else None, b, torch.tensor(9), list(k), list(d), list(s),
                list(p), ins, outs]
        tag = "" if dtype == torch.float32 else f"/{dtype}"
        out[f"conv/{name}/{gi}/{scaled}{tag}"] = _call(torch.ops.analog.tile_conv2d, head,
                                                  {**BASE, **kw}, [])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="FILE")
    group.add_argument("--compare", metavar="FILE")
    args = ap.parse_args()
    torch.set_num_threads(2)
    now = outputs()
    if args.save:
        torch.save(now, args.save)
        print(f"saved {len(now)} outputs to {args.save}")
        return 0
    before = torch.load(args.compare, weights_only=True)
    bad = [k for k in before if k not in now or not torch.equal(before[k], now[k])]
    print(f"{len(before) - len(bad)}/{len(before)} outputs bit-identical")
    for k in bad[:20]:
        print("  differs:", k)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
