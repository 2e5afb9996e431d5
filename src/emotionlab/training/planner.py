"""The time-budget planner (``--time-budget``): how many epochs fit, and the per-run timing summary."""
from __future__ import annotations

import time

import numpy as np


def history_summary(history: list[dict]) -> dict:
    """Epochs run, median seconds per epoch and median img/s of a run's history (rows of fit or of history.csv).

    Medians: a few epochs slowed by another job on a shared machine should not set the study's compute column.
    """
    secs = [float(h["seconds"]) for h in history]
    return {"epochs_run": len(history), "seconds_per_epoch": float(np.median(secs)) if secs else None,
            "img_s": float(np.median([float(h["img_s"]) for h in history])) if history else None}


class EpochPlanner:
    """How many epochs fit in ``budget`` seconds of wall clock, from the epochs measured so far.

    With a fixed horizon (``anneal=True``: cosine) the plan follows the mean measured rate both ways while the
    first quarter of the plan runs (a GPU shared with other jobs speeds up when they end); later it only
    shrinks, so the cosine tail is never stretched. Without one (plateau, constant rate) nothing depends on the
    plan but the stopping point, so it follows the remaining time at the recent epoch time (median of the last
    three) for the whole run: a few slow epochs beside another job no longer cut the run short for good, and the
    run stops when the next epoch would overrun the budget. With a horizon the plan never drops below the epochs
    already run plus one while time is left. It never exceeds ``max_epochs``.
    """

    def __init__(self, budget: float, max_epochs: int, start_epoch: int = 0, clock=time.perf_counter,
                 anneal: bool = True):
        self.budget, self.max_epochs, self.start_epoch, self.clock = budget, max_epochs, start_epoch, clock
        self.anneal = anneal
        self.t0 = self.t_last = clock()
        self.planned = max_epochs
        self.durations: list[float] = []

    def after_epoch(self, done: int) -> int:
        now = self.clock()
        elapsed = now - self.t0
        self.durations.append(now - self.t_last)
        self.t_last = now
        ran = done - self.start_epoch
        if self.anneal:
            fit = self.start_epoch + int(self.budget / max(elapsed / max(ran, 1), 1e-9))
        else:
            recent = float(np.median(self.durations[-3:]))
            fit = done + int(max(self.budget - elapsed, 0.0) / max(recent, 1e-9))
        floor = done + (1 if self.anneal and elapsed < self.budget else 0)  # no fixed horizon: stop at the budget
        fit = max(floor, min(self.max_epochs, fit))
        if not self.anneal or done <= max(1, self.planned // 4) or fit < self.planned:
            self.planned = fit
        return self.planned
