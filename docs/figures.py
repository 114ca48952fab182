"""The documentation's figures, drawn from the examples (never by hand).

- ``accuracy_vs_time.png``: the main job (``examples/quickstart.py``): held-out accuracy of the
  shipped digits CNN over programmed chips, from t = 0 to one year of drift, with and without
  global drift compensation; the quick start's own ``accuracy_over_time`` and ``plot``.
- ``tile_report.png``: the quick start's tile report (``ac.report(...).plot``);
  ``tile_report_128.png``: the same CNN on 128x128 crossbars, where layers split into tiles.
- ``cost_hermes.png`` and ``floorplan_hermes.png``: the quick start's CNN on the IBM HERMES
  preset (``ac.report(..., hardware="hermes")``): the tile report with the energy per layer, and
  the chip's cores coloured by the layer placed on them (``plot_floorplan``).
- ``device_response.png``: the response curves of the pulsed devices of in-memory training:
  the weight of a few devices of one ``AnalogLinear(1, DEVICES)`` training tile against the
  pulse number, for ``PULSES`` up then ``PULSES`` down pulses, each one a real ``ac.AnalogSGD``
  step (``lr = dw_min``, trains of one pulse, input 1, error -1 then +1) through the library's
  own update kernel; the devices of :func:`response_devices`.

The site build (``docs/hooks.py``) calls :func:`build` and caches the result by the hash of its
inputs. By hand: ``python docs/figures.py --out DIR [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The files :func:`build` writes.
FIGURES = ("accuracy_vs_time.png", "tile_report.png", "tile_report_128.png", "cost_hermes.png",
           "floorplan_hermes.png", "device_response.png")
#: The main job's chips and times; ``quick`` draws from one chip at t = 0 and one day.
CHIPS, QUICK_CHIPS = 5, 1
#: Devices per panel and pulses per direction of the device response figure.
DEVICES, PULSES = 4, 300


def _examples() -> tuple:
    """The quick start's module and its data helpers (``examples/`` is not a package)."""
    examples = str(ROOT / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import digits_common
    import quickstart

    return quickstart, digits_common


def response_devices() -> dict[str, Any]:
    """The device configs of ``device_response.png``: aihwkit's defaults (device-to-device and
    cycle-to-cycle spreads included) with ``dw_min = 0.01`` and a few response parameters set so
    that each shape shows."""
    import analog_compiler as ac

    common = {"dw_min": 0.01, "construction_seed": 7}
    return {
        "ConstantStepDevice": ac.ConstantStepDevice(**common),
        "LinearStepDevice (gamma 0.8)": ac.LinearStepDevice(gamma_up=0.8, gamma_down=0.8,
                                                             **common),
        "SoftBoundsDevice (bounds +-1)": ac.SoftBoundsDevice(w_max=1.0, w_min=-1.0, **common),
        "ExpStepDevice": ac.ExpStepDevice(**common),
        "PowStepDevice (pow_gamma 2)": ac.PowStepDevice(pow_gamma=2.0, **common),
        "PiecewiseStepDevice": ac.PiecewiseStepDevice(
            piecewise_up=[1.5, 1.2, 1.0, 0.6, 0.2], piecewise_down=[0.2, 0.6, 1.0, 1.2, 1.5],
            **common),
    }


def response_curve(device: Any, pulses: int = PULSES, devices: int = DEVICES) -> Any:
    """The weights ``[2 * pulses + 1, devices]`` of ``devices`` fresh devices of ``device``'s
    model, starting at 0, after each of ``pulses`` up pulses and then ``pulses`` down pulses.

    Each pulse is one ``ac.AnalogSGD`` step of an ``AnalogLinear(1, devices)`` training tile with
    input 1 and error ``-1`` (up) or ``+1`` (down): ``lr = dw_min`` and trains of one pulse
    (``desired_bl=1``, no bit-line or update management) make every step exactly one pulse."""
    import torch

    import analog_compiler as ac

    update = ac.UpdateParameters(desired_bl=1, update_bl_management=False,
                                 update_management=False)
    layer = ac.AnalogLinear(1, devices, bias=False,
                            rpu_config=ac.SingleRPUConfig(device=device, update=update))
    layer.set_weights(torch.zeros(devices, 1))
    opt = ac.AnalogSGD(layer.parameters(), lr=device.dw_min)
    x = torch.ones(1, 1)
    weights = [layer.get_weights()[0][:, 0].clone()]
    for step in range(2 * pulses):
        opt.zero_grad()
        (layer(x) * (-1.0 if step < pulses else 1.0)).sum().backward()
        opt.step()
        weights.append(layer.get_weights()[0][:, 0].clone())
    return torch.stack(weights)


def plot_device_response(path: Path) -> None:
    """Draw ``device_response.png``: one panel per device of :func:`response_devices`."""
    import matplotlib.pyplot as plt
    import torch

    torch.manual_seed(0)  # the cycle-to-cycle noise of the updates follows torch's generator
    models = response_devices()
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    for ax, (name, device) in zip(axes.flat, models.items()):
        curve = response_curve(device)
        ax.plot(curve.numpy(), lw=1)
        ax.axvline(PULSES, color="0.6", ls=":", lw=1)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel(f"pulse number ({PULSES} up, then {PULSES} down)")
    for ax in axes[:, 0]:
        ax.set_ylabel("weight")
    fig.suptitle(f"Device response: {DEVICES} devices each (dw_min 0.01, aihwkit's default "
                 "device-to-device and cycle-to-cycle spreads)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
        plot_device_response(out / "device_response.png")
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
