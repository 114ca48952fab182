"""AnalogSGD: stochastic gradient descent for models with training tiles (aihwkit's name).

The optimizer knows no device physics: for each weight of a training tile array
(``SingleRPUConfig`` layers) it asks the array to apply the update its backward recorded, with
the parameter group's learning rate (``TrainingTileArray.apply_update``: the pulsed update on
the devices); every other parameter (biases, digital layers, inference tiles) takes a plain
``torch.optim.SGD`` step. LR schedulers work, since the group's ``lr`` is read at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .runtime.training_tile import training_array_of


class AnalogSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose steps on training-tile weights are pulsed analog updates.

    Momentum, dampening, Nesterov and weight decay apply to the digital parameters only (an
    analog tile updates in place from the recorded inputs and errors, as in aihwkit).
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step: the analog tiles' pulsed updates, then SGD on the rest."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                arr = training_array_of(p)
                if arr is not None and arr.has_pending_update:
                    arr.apply_update(float(group["lr"]))
        super().step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients and the analog updates recorded but not yet applied."""
        super().zero_grad(set_to_none=set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                arr = training_array_of(p)
                if arr is not None:
                    arr.discard_update()
