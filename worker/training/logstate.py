"""A resumed run logs what the uninterrupted one would have: the Trainer's logging state travels
in the checkpoint.

The Trainer averages the train loss over the steps since its last log, and trl counts tokens in
the trainer object; neither is in ``trainer_state.json``. Resumed from a checkpoint between two
logging steps, the first logged loss then averaged only the steps since the checkpoint, and the
token count (so ``tokens_per_second``) started again from zero. ``ResumableLogMixin`` writes the
partial loss sum, the step it counts from and the token count beside each checkpoint and puts
them back on resume.
"""

import json
from pathlib import Path
from typing import Any

from transformers.trainer_pt_utils import nested_gather
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

LOG_STATE_FILE = "tunedeck_log_state.json"


class ResumableLogMixin:
    """For any transformers Trainer subclass (trl's SFTTrainer included)."""

    args: Any
    state: Any
    callback_handler: Any
    _tr_loss: Any
    _globalstep_last_logged: int
    _total_loss_scalar: float

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)  # type: ignore[misc]
        # every rank takes part in the gather; rank 0 writes
        loss_sum = nested_gather(self._tr_loss, self.args.parallel_mode).mean().item()
        if not self.args.should_save:
            return
        folder = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        state = {
            "loss_sum": loss_sum,  # the train loss summed over the steps since the last log
            "last_logged_step": self._globalstep_last_logged,
            "total_loss": self._total_loss_scalar,
            "train_tokens": getattr(self, "_total_train_tokens", None),  # trl's running count
        }
        (folder / LOG_STATE_FILE).write_text(json.dumps(state))

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        saved = None
        if isinstance(resume_from_checkpoint, str | Path):
            path = Path(resume_from_checkpoint) / LOG_STATE_FILE
            saved = json.loads(path.read_text()) if path.exists() else None
        self._pending_log_state = saved
        if saved and saved.get("train_tokens") is not None and hasattr(self, "_total_train_tokens"):
            self._total_train_tokens = saved["train_tokens"]
            for callback in self.callback_handler.callbacks:  # tokens/s counts from here
                if hasattr(callback, "resumed_tokens"):
                    callback.resumed_tokens = float(saved["train_tokens"])
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)  # type: ignore[misc]

    def _maybe_log_save_evaluate(self, tr_loss: Any, *args: Any, **kwargs: Any) -> None:
        saved = getattr(self, "_pending_log_state", None)
        if saved:  # the first step after a resume: the window since the last log goes on
            self._pending_log_state = None
            tr_loss.add_(float(saved["loss_sum"]))
            self._globalstep_last_logged = int(saved["last_logged_step"])
            self._total_loss_scalar += float(saved["total_loss"])
        super()._maybe_log_save_evaluate(tr_loss, *args, **kwargs)  # type: ignore[misc]
