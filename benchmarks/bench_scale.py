"""A Llama-architecture decoder at scale: convert, program, drift, forward and peak memory.

The model is built from a ``transformers`` ``LlamaConfig`` with random weights (nothing is
downloaded). Presets: ``836m`` (hidden 2048, 16 layers, intermediate 5632, 32 heads, 4 KV
heads, vocab 32000, fp32: 836M parameters) and ``3b`` (hidden 3072, 28 layers, intermediate
8192, 24 heads, 8 KV heads, vocab 32000, bfloat16). One process, two phases:

- chip: build the model, ``convert`` it in place (the process holds one model, as a user at
  this scale would), ``program_analog_weights``, ``drift_analog_weights(3600)``, a short
  ``generate()``; after each step the process's maximum resident set size over the bytes of
  the model's own weights;
- forward: build the model again, convert a copy, and time the digital and the analog forward
  at sequence length ``--seq`` interleaved (``--reps`` pairs after one warm-up each; the ratio
  is the median of the per-pair ratios). Its chip is unprogrammed unless ``--program-forward``
  (the kernel and its cost are the same).

Not a test: ``python benchmarks/bench_scale.py [--preset 836m|3b] [--layers N] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import paired  # noqa: E402

import analog_compiler as ac  # noqa: E402

PRESETS = {
    "836m": {"hidden_size": 2048, "num_hidden_layers": 16, "intermediate_size": 5632,
             "num_attention_heads": 32, "num_key_value_heads": 4, "dtype": "float32"},
    "3b": {"hidden_size": 3072, "num_hidden_layers": 28, "intermediate_size": 8192,
           "num_attention_heads": 24, "num_key_value_heads": 8, "dtype": "bfloat16"},
}


def peak_rss() -> float:
    """Maximum resident set size of this process so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def memory(weight_bytes: float, baseline: float) -> str:
    """Peak RSS over the weights' bytes, in all and above the process before the model."""
    peak = peak_rss()
    return (f"RSS peak {peak / weight_bytes:.2f}x the weights "
            f"({(peak - baseline) / weight_bytes:.2f}x above the process without the model)")


def build(preset: str, layers: int | None, dtype_name: str | None = None) -> torch.nn.Module:
    """The digital decoder with random weights (seeded), in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    spec = dict(PRESETS[preset])
    dtype = getattr(torch, dtype_name or spec["dtype"])
    del spec["dtype"]
    if layers is not None:
        spec["num_hidden_layers"] = layers
    config = LlamaConfig(vocab_size=32000, tie_word_embeddings=False, **spec)
    torch.manual_seed(0)
    # built in its dtype (as from_pretrained(..., torch_dtype=...) loads it): building in float32
    # and casting would put a float32 copy of every weight on the peak
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def chip_phase(args: argparse.Namespace) -> None:
    """Convert in place (one copy of the model in the process), program, drift, generate."""
    import transformers  # noqa: F401 - part of the baseline, as torch is

    baseline = peak_rss()
    t0 = time.perf_counter()
    model = build(args.preset, args.layers, args.dtype)
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    dtype = next(model.parameters()).dtype
    print(f"model: {params / 1e6:.0f}M parameters, {dtype}, {weight_bytes / 2**30:.2f} GiB of "
          f"weights (built in {time.perf_counter() - t0:.1f} s); "
          f"{memory(weight_bytes, baseline)}")

    t0, c0 = time.perf_counter(), time.process_time()
    analog = ac.convert(model, ac.InferenceRPUConfig(), inplace=True, progress=True).eval()
    t_convert, c_convert = time.perf_counter() - t0, time.process_time() - c0
    del model
    gc.collect()
    n = sum(layer.analog_module.weight.numel() for _, layer in ac.analog_layers(analog))
    print(f"convert (inplace): {t_convert:.1f} s, CPU {c_convert:.1f} s ({n / 1e6:.0f}M analog "
          f"weights); "
          f"{memory(weight_bytes, baseline)}")

    t0, c0 = time.perf_counter(), time.process_time()
    ac.program_analog_weights(analog)
    t_program, c_program = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    ac.drift_analog_weights(analog, 3600.0)
    t_drift, c_drift = time.perf_counter() - t0, time.process_time() - c0
    per_m = 1e3 / (n / 1e6)
    print(f"program + drift CPU time (all threads): {c_program:.1f} + {c_drift:.1f} s "
          f"({(c_program + c_drift) * per_m:.1f} ms per million weights)")
    print(f"program: {t_program:.1f} s ({t_program * per_m:.1f} ms per million weights); "
          f"drift: {t_drift:.1f} s ({t_drift * per_m:.1f} ms per million); together "
          f"{(t_program + t_drift) * per_m:.1f} ms per million; "
          f"{memory(weight_bytes, baseline)}")
    ids = torch.randint(0, 32000, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = analog.generate(ids, max_new_tokens=4, do_sample=False)
    print(f"generate: {tuple(out.shape)} tokens; {memory(weight_bytes, baseline)} (one model "
          "in the process: converted in place, programmed, drifted)")


def forward_phase(args: argparse.Namespace) -> None:
    """Convert a copy (the digital model stays), time both forwards interleaved."""
    digital = build(args.preset, args.layers, args.dtype)
    t0, c0 = time.perf_counter(), time.process_time()
    analog = ac.convert(digital, ac.InferenceRPUConfig(), progress=False).eval()
    print(f"convert (a copy, the digital model kept): {time.perf_counter() - t0:.1f} s, CPU "
          f"{time.process_time() - c0:.1f} s")
    if args.program_forward:  # same kernel and cost either way; programming takes minutes
        ac.program_analog_weights(analog)
        ac.drift_analog_weights(analog, 3600.0)
    ids = torch.randint(0, 32000, (1, args.seq), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        td, ta, ratio = paired(lambda: digital(ids), lambda: analog(ids), args.reps, 1)
    print(f"forward, sequence length {args.seq}: digital {td / 1e3:.2f} s, analog "
          f"{ta / 1e3:.2f} s, ratio {ratio:.2f}x (median of {args.reps} interleaved pairs, "
          f"{'programmed and drifted chip' if args.program_forward else 'target weights'})")


def main() -> None:
    """Run the benchmark and print one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="836m")
    parser.add_argument("--layers", type=int, help="override the number of decoder layers")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"],
                        help="override the preset's dtype")
    parser.add_argument("--seq", type=int, default=128, help="sequence length (128)")
    parser.add_argument("--reps", type=int, default=3, help="paired forward runs (3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--program-forward", action="store_true",
                        help="program and drift the chip of the forward phase too (the forward "
                             "kernel and its cost are the same; programming takes minutes)")
    parser.add_argument("--skip-chip", action="store_true", help="only the forward phase")
    parser.add_argument("--skip-forward", action="store_true", help="only the chip phase")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, backend {ac.runtime.backend()['tile_forward']}")
    if not args.skip_chip:
        chip_phase(args)
        gc.collect()
    if not args.skip_forward:
        forward_phase(args)


if __name__ == "__main__":
    main()
