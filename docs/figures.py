"""The documentation's figures, drawn from the examples (never by hand).

- ``accuracy_vs_time.png``: the main job (``examples/quickstart.py``): held-out accuracy of the
  shipped digits CNN over programmed chips, from t = 0 to one year of drift, with and without
  global drift compensation; the quick start's own ``accuracy_over_time`` and ``plot``.
- ``tile_report.png``: the quick start's tile report (``ac.report(...).plot``);
  ``tile_report_128.png``: the same CNN on 128x128 crossbars, where layers split into tiles.
- ``cost_hermes.png`` and ``floorplan_hermes.png``: the quick start's CNN on the IBM HERMES
  preset (``ac.report(..., hardware="hermes")``): the tile report with the energy per layer, and
  the chip's cores coloured by the layer placed on them (``plot_floorplan``).

The site build (``docs/hooks.py``) calls :func:`build` and caches the result by the hash of its
inputs. By hand: ``python docs/figures.py --out DIR [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The files :func:`build` writes.
FIGURES = ("accuracy_vs_time.png", "tile_report.png", "tile_report_128.png", "cost_hermes.png",
           "floorplan_hermes.png")
#: The main job's chips and times; ``quick`` draws from one chip at t = 0 and one day.
CHIPS, QUICK_CHIPS = 5, 1


def _examples() -> tuple:
    """The quick start's module and its data helpers (``examples/`` is not a package)."""
    examples = str(ROOT / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import digits_common
    import quickstart

    return quickstart, digits_common


def build(out: Path, quick: bool = False) -> list[Path]:
    """Draw every figure of :data:`FIGURES` into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import torch

    import analog_compiler as ac

    quickstart, common = _examples()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        digital = common.load_pretrained()
        _, _, x_test, y_test = common.load_digits_split()
        analog = ac.convert(digital, quickstart.rpu_config()).eval()
        ac.report(analog, (x_test[:1],)).plot(out / "tile_report.png")
        on_chip = ac.report(analog, (x_test[:1],), hardware="hermes")
        on_chip.plot(out / "cost_hermes.png")
        on_chip.plot_floorplan(out / "floorplan_hermes.png")
        small = quickstart.rpu_config()
        small.mapping = ac.MappingParameter(max_input_size=128, max_output_size=128,
                                            weight_scaling_omega=1.0,
                                            weight_scaling_columnwise=True)
        ac.report(ac.convert(digital, small), (x_test[:1],)).plot(out / "tile_report_128.png")

        times = list(quickstart.TIMES.values())
        chips = CHIPS
        if quick:
            times, chips = [0.0, quickstart.TIMES["1 day"]], QUICK_CHIPS
        with contextlib.redirect_stdout(io.StringIO()):  # its progress bar
            results = quickstart.accuracy_over_time(digital, x_test, y_test, times, chips, 0)
        digital_acc = common.evaluate(digital, x_test, y_test)
        quickstart.plot(results, digital_acc, out / "accuracy_vs_time.png")
    finally:
        torch.set_num_threads(threads)
    return [out / name for name in FIGURES]


def main(argv: list[str] | None = None) -> int:
    """Command line: draw the figures into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "figures",
                        help="output folder (build/figures)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_CHIPS} chip at t = 0 and 1 day instead of {CHIPS} chips "
                        "at five times")
    args = parser.parse_args(argv)
    for path in build(args.out, quick=args.quick):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
