"""Learning-rate schedules as plain functions of the step, shared by both engines.

    >>> s = Schedule("cosine", base_lr=0.1, total_steps=1000, warmup_steps=50)
    >>> s.lr(0), s.lr(50), s.lr(999)

The values equal torch.optim.lr_scheduler's (StepLR, CosineAnnealingLR, OneCycleLR
without momentum cycling; warm-up = LinearLR then the schedule, as SequentialLR), so a
step of either engine sees the same learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "step", "cosine", "onecycle")


@dataclass(frozen=True)
class Schedule:
    """`lr(step)` for step = 0, 1, ... total_steps-1 (one step = one optimizer update)."""

    name: str = "constant"
    base_lr: float = 0.1
    total_steps: int = 1
    warmup_steps: int = 0
    warmup_start: float = 0.1  # the first warm-up step runs at warmup_start * base_lr
    step_size: int = 1  # "step": multiply by gamma every step_size steps
    gamma: float = 0.1
    eta_min: float = 0.0  # "cosine": the final lr
    pct_start: float = 0.3  # "onecycle": share of steps spent rising
    div_factor: float = 25.0  # "onecycle": start at base_lr / div_factor
    final_div_factor: float = 1e4  # "onecycle": end at start / final_div_factor

    def __post_init__(self):
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule {self.name!r}: expected one of {', '.join(SCHEDULES)}")

    def lr(self, step: int) -> float:
        w = self.warmup_steps
        if step < w:
            return self.base_lr * (self.warmup_start + (1 - self.warmup_start) * step / w)
        return self._main(step - w, max(1, self.total_steps - w))

    def _main(self, t: int, total: int) -> float:
        lr = self.base_lr
        if self.name == "constant":
            return lr
        if self.name == "step":
            return lr * self.gamma ** (t // self.step_size)
        if self.name == "cosine":
            return (
                self.eta_min
                + (lr - self.eta_min) * (1 + math.cos(math.pi * min(t, total) / total)) / 2
            )
        # one-cycle: cosine up from lr/div to lr over pct_start, then cosine down to the floor
        start = lr / self.div_factor
        floor = start / self.final_div_factor
        rise_end = float(self.pct_start * total) - 1
        if t <= rise_end:
            return _cos(start, lr, t / rise_end if rise_end > 0 else 1.0)
        pct = (t - rise_end) / (total - 1 - rise_end)
        return _cos(lr, floor, min(pct, 1.0))


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
