"""The training function of each task type (the spec's ``task_type``). Each takes the same
keyword arguments and returns a TrainOutcome; one process runs it, or every rank of a
data-parallel job (ddp_entry)."""

from worker.training.classification import train_classifier
from worker.training.pipeline import train_adapter
from worker.training.seq2seq import train_seq2seq

TRAINERS = {"CAUSAL_LM": train_adapter, "SEQ_CLS": train_classifier, "SEQ_2_SEQ_LM": train_seq2seq}
