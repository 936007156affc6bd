"""Training-health rules on synthetic curves: each alert once, with the seed's remedies in order."""

from app.core.remedies import OVERFITTING_REMEDIES, UNDERFITTING_REMEDIES
from worker.training.monitor import TrainingMonitor


def feed(train: list[float], valid: list[float], every: int = 10) -> list[str]:
    """Train losses at steps 1..n, a validation loss every ``every`` steps; alert kinds raised."""
    monitor, kinds = TrainingMonitor(), []
    for step, value in enumerate(train, start=1):
        kinds += [a.kind for a in monitor.train_loss(step, value)]
        if step % every == 0 and step // every <= len(valid):
            kinds += [a.kind for a in monitor.valid_loss(step, valid[step // every - 1])]
    return kinds


def falling(start: float, stop: float, n: int) -> list[float]:
    return [start + (stop - start) * i / (n - 1) for i in range(n)]


def test_healthy_run_raises_nothing() -> None:
    assert feed(falling(2.0, 0.8, 50), [1.9, 1.5, 1.2, 1.0, 0.9]) == []


def test_overfitting_when_validation_rises_while_train_falls() -> None:
    monitor = TrainingMonitor()
    for step, value in enumerate(falling(2.0, 0.3, 40), start=1):
        monitor.train_loss(step, value)
        if step in (10, 20, 30, 40):
            alerts = monitor.valid_loss(step, {10: 1.2, 20: 1.1, 30: 1.15, 40: 1.3}[step])
    assert [a.kind for a in alerts] == ["overfitting"]
    assert alerts[0].remedies == OVERFITTING_REMEDIES
    assert (
        alerts[0].remedies[0].startswith("raise lora_dropout") and alerts[0].remedies[-1] == "add more data"
    )
    assert "(1.1 → 1.3)" in alerts[0].message


def test_underfitting_when_both_stay_high_and_flat() -> None:
    kinds = feed([3.0 - 0.001 * i for i in range(40)], [3.1, 3.09, 3.09, 3.08])
    assert kinds == ["underfitting"]
    monitor = TrainingMonitor()
    monitor.train_loss(1, 3.0)
    for step in (10, 20, 30):
        alerts = monitor.valid_loss(step, 3.0)
    assert alerts[0].remedies == UNDERFITTING_REMEDIES and alerts[0].remedies[0] == "raise r"


def test_low_flat_loss_is_not_underfitting() -> None:
    assert feed([0.5] * 40, [0.6, 0.6, 0.6, 0.6]) == []


def test_nan_is_fatal_and_spikes_warn_once() -> None:
    monitor = TrainingMonitor()
    assert [monitor.train_loss(s, 1.0) for s in range(1, 10)] == [[]] * 9
    spike = monitor.train_loss(10, 5.0)
    assert [a.kind for a in spike] == ["loss_spike"] and not spike[0].fatal
    assert monitor.train_loss(11, 6.0) == []  # once per job
    nan = monitor.train_loss(12, float("nan"))
    assert nan[0].kind == "nan_loss" and nan[0].fatal and "diverged" in nan[0].message
