"""The training pipeline: the only place that turns a TrainingSpec into peft / trl objects."""
