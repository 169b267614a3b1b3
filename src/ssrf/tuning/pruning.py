"""The pruner of `ssrf tune`: the median rule, fair to runs that stopped early."""

from __future__ import annotations

import math
import statistics
from typing import Any

from optuna.pruners import BasePruner
from optuna.trial import TrialState


class MedianOfRuns(BasePruner):
    """After epoch `s` a trial is pruned when its best validation value so far is below the median of the
    complete trials' best values up to epoch `s`, a trial that stopped before `s` counting with its final
    best (higher is better). Optuna's MedianPruner compares with the values at epoch `s` of the complete
    trials that reached it: under early stopping those are the good trials alone, and a single one of them
    can prune a decent trial. Nothing is pruned before `startup` trials are complete, nor in a trial's first
    `warmup` epochs."""

    def __init__(self, startup: int = 2, warmup: int = 1) -> None:
        self.startup, self.warmup = startup, warmup

    def prune(self, study: Any, trial: Any) -> bool:
        step = trial.last_step
        if step is None or step <= self.warmup:
            return False
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < self.startup:
            return False
        mine = best_until(trial.intermediate_values, step)
        if math.isnan(mine):
            return True  # no finite metric after `step` epochs: nothing to wait for
        others = [v for v in (best_until(t.intermediate_values, step) for t in complete) if not math.isnan(v)]
        if len(others) < self.startup:
            return False
        return mine < statistics.median(others)


def best_until(values: dict[int, float], step: int) -> float:
    """The largest finite value reported at a step up to `step` (NaN when there is none)."""
    good = [v for s, v in values.items() if s <= step and v is not None and math.isfinite(v)]
    return max(good) if good else math.nan
