"""Training health from the loss curves: overfitting, underfitting, divergence (NaN or spikes).

Pure Python so the rules are testable on synthetic curves; the worker feeds it live values and
turns each alert into an event (type "alert") that the job page shows as a banner.
"""

import math
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import median

from app.core.remedies import DIVERGENCE_REMEDIES, OVERFITTING_REMEDIES, UNDERFITTING_REMEDIES

OVERFIT_RISES = 2  # validation loss rising at this many evaluations in a row …
UNDERFIT_EVALS = 3  # … or flat over this many evaluations …
FLAT = 0.01  # … meaning less than 1% better …
HIGH_LOSS = 1.5  # … while still this high
SPIKE_FACTOR = 3.0  # a train loss this many times the recent median is a spike
SPIKE_WINDOW = 20


@dataclass(frozen=True)
class Alert:
    """A health finding with the seed's remedies, in its order."""

    kind: str  # overfitting, underfitting, nan_loss, loss_spike
    step: int
    message: str
    remedies: tuple[str, ...]
    fatal: bool = False


@dataclass
class TrainingMonitor:
    """Feed it losses as they arrive; each kind of alert is raised once per job."""

    train: list[tuple[int, float]] = field(default_factory=list)
    valid: list[tuple[int, float]] = field(default_factory=list)
    raised: set[str] = field(default_factory=set)

    def train_loss(self, step: int, value: float) -> list[Alert]:
        if not math.isfinite(value):
            return self._raise(
                "nan_loss",
                step,
                f"train loss is {value} at step {step}: training diverged",
                DIVERGENCE_REMEDIES,
                fatal=True,
            )
        recent = [v for _, v in self.train[-SPIKE_WINDOW:]]
        self.train.append((step, value))
        if len(recent) >= 5 and value > SPIKE_FACTOR * median(recent):
            return self._raise(
                "loss_spike",
                step,
                f"train loss spiked to {value:.3g} at step {step} (recent median {median(recent):.3g})",
                DIVERGENCE_REMEDIES,
            )
        return []

    def valid_loss(self, step: int, value: float) -> list[Alert]:
        if not math.isfinite(value):
            return self._raise(
                "nan_loss",
                step,
                f"validation loss is {value} at step {step}: training diverged",
                DIVERGENCE_REMEDIES,
                fatal=True,
            )
        self.valid.append((step, value))
        return self._overfitting(step) + self._underfitting(step)

    def _train_at(self, step: int) -> float | None:
        before = [v for s, v in self.train if s <= step]
        return before[-1] if before else None

    def _overfitting(self, step: int) -> list[Alert]:
        window = self.valid[-(OVERFIT_RISES + 1) :]
        if len(window) < OVERFIT_RISES + 1:
            return []
        valid_rising = all(b[1] > a[1] for a, b in pairwise(window))
        first, last = self._train_at(window[0][0]), self._train_at(window[-1][0])
        if valid_rising and first is not None and last is not None and last < first:
            return self._raise(
                "overfitting",
                step,
                f"validation loss rose for {OVERFIT_RISES} evaluations in a row "
                f"({window[0][1]:.4g} → {window[-1][1]:.4g}) while train loss fell "
                f"({first:.4g} → {last:.4g}): the adapter is memorising the training set",
                OVERFITTING_REMEDIES,
            )
        return []

    def _underfitting(self, step: int) -> list[Alert]:
        window = self.valid[-UNDERFIT_EVALS:]
        if len(window) < UNDERFIT_EVALS:
            return []
        first_valid, last_valid = window[0][1], window[-1][1]
        first_train, last_train = self._train_at(window[0][0]), self._train_at(window[-1][0])
        if first_train is None or last_train is None:
            return []
        flat = first_valid - last_valid < FLAT * first_valid and first_train - last_train < FLAT * first_train
        if flat and min(last_valid, last_train) > HIGH_LOSS:
            return self._raise(
                "underfitting",
                step,
                f"train and validation loss stay high and flat over {UNDERFIT_EVALS} evaluations "
                f"(validation {first_valid:.4g} → {last_valid:.4g}): the adapter is not learning enough",
                UNDERFITTING_REMEDIES,
            )
        return []

    def _raise(
        self, kind: str, step: int, message: str, remedies: tuple[str, ...], fatal: bool = False
    ) -> list[Alert]:
        if kind in self.raised:
            return []
        self.raised.add(kind)
        return [Alert(kind, step, message, remedies, fatal)]
