"""SEQ_2_SEQ_LM: LoRA on an encoder-decoder base (T5, BART); instruction and input in, output out."""

from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerBase,
)

from app.core.spec import TrainingSpec
from app.core.storage import ArtifactStore
from worker.training.data import to_source_target
from worker.training.pipeline import TrainOutcome, start_training, train_and_save
from worker.training.reporting import JobReporter
from worker.training.trainer import (
    BucketedTrainer,
    TaskReportingCallback,
    load_peft_model,
    training_arguments,
)


def encode(rows: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """Source ids for the encoder; target ids (ending in eos) as labels: the loss covers only these."""
    pairs = [to_source_target(row) for row in rows]
    sources = tokenizer([p["source"] for p in pairs], truncation=True, max_length=max_length)
    targets = tokenizer([p["target"] for p in pairs], truncation=True, max_length=max_length - 1)
    eos = tokenizer.eos_token_id
    labels = [ids if ids and ids[-1] == eos else [*ids, eos] for ids in targets["input_ids"]]
    return Dataset.from_dict(
        {"input_ids": sources["input_ids"], "attention_mask": sources["attention_mask"], "labels": labels}
    )


def train_seq2seq(
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
    """Train a LoRA adapter for an encoder-decoder model and save it into ``adapter_dir``."""
    device, tokenizer, staging = start_training(
        spec,
        model_path=model_path,
        store=store,
        reporter=reporter,
        seed=seed,
        what="encoder-decoder base model",
    )
    model = load_peft_model(
        AutoModelForSeq2SeqLM, model_path, spec, device, trust_remote_code=trust_remote_code
    )
    callback = TaskReportingCallback(reporter, store, spec)
    has_eval = bool(validation_rows)
    trainer = BucketedTrainer(
        model=model,
        args=training_arguments(spec, output_dir=staging, device=device, seed=seed, has_eval=has_eval),
        # Labels are padded with -100 (ignored by the loss); decoder inputs are the labels shifted right.
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        train_dataset=encode(train_rows, tokenizer, spec.max_seq_length),
        eval_dataset=encode(validation_rows, tokenizer, spec.max_seq_length) if has_eval else None,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    return train_and_save(
        trainer,
        callback,
        spec=spec,
        reporter=reporter,
        store=store,
        adapter_dir=adapter_dir,
        resume_from=resume_from,
    )
