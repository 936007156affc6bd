"""Metric keys the worker writes and the pages plot (shared by both sides)."""

TRAIN_LOSS = "train_loss"
VALID_LOSS = "valid_loss"
VALID_ACCURACY = "valid_accuracy"  # SEQ_CLS jobs: share of validation rows labelled right
LEARNING_RATE = "learning_rate"
GRAD_NORM = "grad_norm"
TOKENS_SEEN = "tokens_seen"
STEP_TIME = "step_time"
EPOCH = "epoch"
TOKENS_PER_SECOND = "tokens_per_second"  # trained tokens per second since the previous log line
MEMORY_GIB = "memory_gib"  # peak device memory (CUDA) or peak process memory (CPU), GiB
