"""SEQ_CLS: LoRA plus a new classifier head on AutoModelForSequenceClassification, with accuracy."""

from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedTokenizerBase,
)

from app.core.spec import TrainingSpec
from app.core.storage import ArtifactStore
from worker.training.data import label_set
from worker.training.pipeline import TrainOutcome, start_training, train_and_save
from worker.training.reporting import JobReporter
from worker.training.trainer import (
    BucketedTrainer,
    TaskReportingCallback,
    load_peft_model,
    training_arguments,
)


def encode(
    rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, label2id: dict[str, int], max_length: int
) -> Dataset:
    """Token ids of each text (no chat template) and the id of its label."""
    encoded = tokenizer([row["text"] for row in rows], truncation=True, max_length=max_length)
    return Dataset.from_dict(
        {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": [label2id[str(row["label"])] for row in rows],
        }
    )


def accuracy(prediction: EvalPrediction) -> dict[str, float]:
    """Share of rows whose highest-scoring class is the label (the Trainer logs it as eval_accuracy)."""
    logits = prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float(np.mean(np.argmax(logits, axis=-1) == prediction.label_ids))}


def train_classifier(
    *,
    spec: TrainingSpec,
    model_path: str,
    train_rows: list[dict[str, Any]],
    validation_rows: list[dict[str, Any]],
    adapter_dir: Path,
    store: ArtifactStore,
    reporter: JobReporter,
    seed: int,
    trust_remote_code: bool = False,
    resume_from: Path | None = None,
) -> TrainOutcome:
    """Train a LoRA classifier; the adapter holds the head, its config.json the label names."""
    labels = label_set(train_rows)
    label2id = {label: index for index, label in enumerate(labels)}
    known = [row for row in validation_rows if str(row.get("label")) in label2id]
    if len(known) < len(validation_rows):
        reporter.event(
            f"{len(validation_rows) - len(known)} validation row(s) have labels the training split lacks; "
            "they are left out of evaluation",
            level="warning",
        )
    reporter.event(f"{len(labels)} labels: {', '.join(labels[:20])}{' …' if len(labels) > 20 else ''}")
    what = "base model for sequence classification"
    device, tokenizer, staging = start_training(
        spec, model_path=model_path, store=store, reporter=reporter, seed=seed, what=what
    )
    model = load_peft_model(
        AutoModelForSequenceClassification,
        model_path,
        spec,
        device,
        trust_remote_code=trust_remote_code,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
        pad_token_id=tokenizer.pad_token_id,  # the head reads the last non-pad token
    )
    callback = TaskReportingCallback(reporter, store, spec)
    trainer = BucketedTrainer(
        model=model,
        args=training_arguments(spec, output_dir=staging, device=device, seed=seed, has_eval=bool(known)),
        data_collator=DataCollatorWithPadding(tokenizer),
        train_dataset=encode(train_rows, tokenizer, label2id, spec.max_seq_length),
        eval_dataset=encode(known, tokenizer, label2id, spec.max_seq_length) if known else None,
        processing_class=tokenizer,
        compute_metrics=accuracy,
        callbacks=[callback],
    )
    outcome = train_and_save(
        trainer,
        callback,
        spec=spec,
        reporter=reporter,
        store=store,
        adapter_dir=adapter_dir,
        resume_from=resume_from,
    )
    if not (outcome.cancelled or outcome.diverged):
        config = model.get_base_model().config
        config.architectures = [type(model.get_base_model()).__name__]
        config.save_pretrained(str(adapter_dir))  # id2label / label2id for whoever loads the adapter
    return outcome
