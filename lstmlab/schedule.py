"""Learning-rate schedules: the rate of each optimizer step, a pure function of the step.

    learning_rate(3e-3, "cosine", step=0, steps=1000, warmup=100)   # 3e-5: warm-up, 1/100 of the way
    learning_rate(3e-3, "cosine", step=550, steps=1000, warmup=100) # 1.5e-3: half way down the cosine

`step` counts the updates made before this one (0 for the first). With `warmup` W > 0 the
rate rises linearly over the first W updates (lr * (step + 1) / W), then follows the schedule
over the remaining `steps - W`:

- "constant": lr;
- "cosine": lr * (1 + cos(pi * p)) / 2, p the fraction of the post-warm-up updates made, so
  the rate falls from lr to 0 at `steps`;
- "step": lr, then lr / 10 from half of the post-warm-up updates, lr / 100 from three quarters.

A run with a wall-clock budget passes `spent`, the fraction of the budget used so far (0 to
1), and the cosine and step schedules then run over whichever ends first, the steps or the
budget: p is the larger of the two fractions. `lstmlab train --max-minutes 15` thus decays
the rate to 0 at the end of the 15 minutes however many steps they hold.

Without a budget the rate is a function of the step alone, so a resumed run gets the same
rates as an uninterrupted one; raising `steps` on resume stretches the cosine and step
schedules from there on. With one, the rate follows the time the run has spent (resumes
included), as the number of steps it makes does.
"""

from __future__ import annotations

import math

from lstmlab.errors import InvalidArgument

SCHEDULES = ("constant", "cosine", "step")


def learning_rate(lr: float, schedule: str, step: int, steps: int, warmup: int = 0, spent: float = 0.0) -> float:
    """The learning rate of update `step` (0-based) of `steps`, for base rate `lr`, with
    `spent` of the run's wall-clock budget used (0 without a budget)."""
    if schedule not in SCHEDULES:
        raise InvalidArgument("train", "lr_schedule", f"must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    span = max(steps - warmup, 1)
    progress = min(max((step - warmup) / span, spent, 0.0), 1.0)
    if schedule == "cosine":
        return lr * (1.0 + math.cos(math.pi * progress)) / 2.0
    return lr * (0.1 if progress < 0.75 else 0.01) if progress >= 0.5 else lr
