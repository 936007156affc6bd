"""Metric keys the worker writes and the pages plot (shared by both sides)."""

TRAIN_LOSS = "train_loss"
VALID_LOSS = "valid_loss"
LEARNING_RATE = "learning_rate"
GRAD_NORM = "grad_norm"
TOKENS_SEEN = "tokens_seen"
STEP_TIME = "step_time"
EPOCH = "epoch"

ALL = (TRAIN_LOSS, VALID_LOSS, LEARNING_RATE, GRAD_NORM, TOKENS_SEEN, STEP_TIME, EPOCH)
