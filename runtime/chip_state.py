"""The chip of a tile array: programming, drift, read-out, and drift compensation.

A chip sample is a function of the target weights and one seed (``program_seed``): every read
re-derives it with ``analog::pcm_chip`` (programming noise and drift exponents from the seed,
drift to the time asked, fresh read noise unless told otherwise), so an array holds two
weight-sized tensors (``weight``, the targets, and ``chip_weight``, the chip now) and a
checkpoint holds the chip exactly. The vocabulary of the matrices is ``tile_array.py``'s.

Reading the chip back (the layers' ``get_weights``): the exact read is ``chip_weight`` itself
(the targets until the array is programmed: a chip holds what was written); ``read_weights``
is aihwkit's realistic read, an estimate from the analog forward.

``ChipState`` is a mixin of ``TileArray``: it reads the array's ``weight``, ``plan``,
``rpu_config``, forward and kernel arguments, and owns the buffers ``chip_weight``,
``program_seed``, ``t_inference``, ``drift_baseline`` and ``drift_alpha``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .ops import pcm_chip, tile_readout_mean


def new_seed() -> Tensor:
    """A fresh kernel seed from torch's default generator (so ``torch.manual_seed`` reproduces)."""
    return torch.randint(0, 2**62, (), dtype=torch.int64)


class ChipState(nn.Module):
    """Programming, drift and drift compensation of a ``TileArray`` (see the module docstring)."""

    def _init_chip_state(self, shape: tuple[int, int, int], **kw) -> None:
        """Register the chip buffers; ``shape`` is ``[G, n_in, out_g]`` (one value per tile
        row) and ``kw`` the device and dtype of the weights."""
        self.register_buffer("chip_weight", torch.empty(0, **kw))
        self.register_buffer("program_seed", torch.zeros((), dtype=torch.int64))
        self.register_buffer("t_inference", torch.full((), -1.0, dtype=torch.float64))
        self.register_buffer("drift_baseline", torch.ones(shape, **kw))
        self.register_buffer("drift_alpha", torch.ones(shape, **kw))

    @property
    def is_programmed(self) -> bool:
        """Whether the array holds a programmed chip (``chip_weight``)."""
        return self.chip_weight.numel() > 0

    def reset_programming(self) -> None:
        """Forget the programmed chip (the forward uses the target weights again)."""
        self.chip_weight = self.weight.new_empty(0)
        self.t_inference.fill_(-1.0)
        self.drift_alpha.fill_(1.0)
        self.drift_baseline.fill_(1.0)

    def read_chip(self, t_inference: float, read_noise: bool = True) -> Tensor | None:
        """The chip weights of sample (``weight``, ``program_seed``) at ``t_inference`` s, with
        fresh read noise (seeded from torch's default generator) unless ``read_noise`` is False;
        None without a noise model. One ``analog::pcm_chip`` call; the array is unchanged."""
        model = self.rpu_config.noise_model
        if model is None:
            return None
        return pcm_chip(self.weight, self.plan, model, self.program_seed, t_inference,
                        new_seed() if read_noise else None)

    @torch.no_grad()
    def program(self, seed: int | None = None) -> None:
        """Program a new chip sample: programming noise and drift exponents (seeded), then the
        drift-compensation baseline from an identity readout."""
        self.program_seed.fill_(int(new_seed()) if seed is None else int(seed))
        chip = self.read_chip(0.0, read_noise=False)
        self.chip_weight = chip if chip is not None else self.weight.detach().clone()
        self.t_inference.fill_(0.0)
        self.drift_alpha.fill_(1.0)
        if self.rpu_config.drift_compensation is not None:
            self.drift_baseline.copy_(self.drift_readout())

    @torch.no_grad()
    def drift(self, t_inference: float) -> None:
        """The programmed chip at ``t_inference`` s (programs first if needed), with fresh read
        noise; updates the drift-compensation factors."""
        if not self.is_programmed:
            self.program()
        model = self.rpu_config.noise_model
        if model is not None:
            model.check_time(float(t_inference))  # (fails before the old chip is let go)
            # The read derives the chip from the targets and the seed, never from the old chip:
            # letting the old one go first keeps one chip-sized tensor alive, not two.
            self.chip_weight = self.chip_weight.new_empty(0)
            self.chip_weight = self.read_chip(float(t_inference))
        self.t_inference.fill_(float(t_inference))
        if self.rpu_config.drift_compensation is not None:
            now = self.drift_readout()
            alpha = self.drift_baseline / now
            self.drift_alpha.copy_(torch.where(now > 0, alpha, torch.ones_like(alpha)))

    @torch.no_grad()
    def read_weights(self, over_sampling: int = 10) -> Tensor:
        """aihwkit's realistic read (its tile's ``read_weights``): the logical weights
        ``[G, out_g, in_g]`` estimated by least squares from the eval-mode analog forward of
        ``over_sampling * in_g`` standard-normal input vectors (torch's default generator), the
        digital bias subtracted. The estimate carries everything the forward does: DAC/ADC
        quantization, IO noise, bound management and every digital scale, the
        drift-compensation factors included. The array is unchanged (its mode is restored)."""
        if isinstance(over_sampling, bool) or not isinstance(over_sampling, int) \
                or over_sampling < 1:
            raise ValueError(f"read_weights: over_sampling must be an int >= 1, "
                             f"got {over_sampling!r}")
        g, out_g, in_g = self.weight.shape
        x = torch.randn(over_sampling * in_g, g * in_g, device=self.weight.device,
                        dtype=self.weight.dtype)
        was_training = self.training
        self.eval()
        try:
            y = self(x)
        finally:
            self.train(was_training)
        if self.bias is not None:
            y = y - self.bias
        # lstsq needs float32/64; per group: x_g @ W_g^T = y_g
        xg = x.float().view(-1, g, in_g).transpose(0, 1)
        yg = y.float().view(-1, g, out_g).transpose(0, 1)
        est = torch.linalg.lstsq(xg, yg).solution  # [G, in_g, out_g]
        return est.transpose(1, 2).to(self.weight.dtype).contiguous()

    def drift_readout(self) -> Tensor:
        """Mean |output| of an identity readout of the chip through the analog forward, per
        tile and row (``[G, n_in, out_g]``), reduced as the drift compensation prescribes."""
        plan = self.plan
        g, out_g, _ = self.weight.shape
        w = self.chip_weight
        # One readout per input split, through that split's tiles only (as each tile reads out
        # its own identity). Vector k drives input k of every group at once (groups are separate
        # tiles); the kernel reads the split's weight columns in place instead of multiplying an
        # identity, and returns the mean |y| per output, never the readout itself.
        means = [tile_readout_mean(w[:, :, off:off + size], new_seed(), plan.out_sizes,
                                   self.kernel_io).view(g, out_g)
                 for off, size in zip(plan.offsets(plan.in_sizes), plan.in_sizes)]
        return self.rpu_config.drift_compensation.reduce(
            torch.stack(means, 1), plan.out_index.to(w.device), plan.n_out)
