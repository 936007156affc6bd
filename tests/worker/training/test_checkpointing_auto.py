"""``gradient_checkpointing: auto`` (the default): a worker recomputes activations only when a step
would not fit its free memory without it, and says which it chose and why."""

from pathlib import Path

from app.core.spec import TrainingSpec
from worker.training.pipeline import resolve_checkpointing


class Events:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def event(self, message: str, **_: object) -> None:
        self.messages.append(message)


def test_auto_is_off_when_the_step_fits_and_on_when_it_would_not(tiny_model_dir: Path) -> None:
    assert TrainingSpec().gradient_checkpointing == "auto"
    events = Events()
    fits = resolve_checkpointing(TrainingSpec(batch_size=4, max_seq_length=256), str(tiny_model_dir), events)  # type: ignore[arg-type]
    assert fits.gradient_checkpointing is False
    assert events.messages[-1].startswith(
        "Gradient checkpointing off (auto): without it a step's activations take"
    )

    huge = TrainingSpec(batch_size=512, max_seq_length=32768)  # ~16M tokens a step: no machine here has room
    assert resolve_checkpointing(huge, str(tiny_model_dir), events).gradient_checkpointing is True  # type: ignore[arg-type]
    assert events.messages[-1].startswith("Gradient checkpointing on (auto)")

    chosen = TrainingSpec(gradient_checkpointing=True)
    assert resolve_checkpointing(chosen, str(tiny_model_dir)) is chosen  # what a user set is kept
    assert TrainingSpec.model_validate({"gradient_checkpointing": "off"}).gradient_checkpointing is False
