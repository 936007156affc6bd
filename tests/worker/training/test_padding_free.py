"""Padding-free batches: trl 1.16 refuses ``padding_free`` beside ``max_length``, so the trainer
truncates rows as usual and flattens each batch in its own collator — one sequence, position ids
restarting at every row, no pad token. Without a KV cache (as in training) transformers builds a
block-diagonal mask from those position ids, so on SDPA a packed row sees only itself and the loss
equals the padded batch's."""

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from app.core.spec import TrainingSpec
from worker.training.pipeline import (
    Device,
    TunedeckSFTTrainer,
    load_model,
    load_tokenizer,
    lora_config,
    sft_config,
)


def test_padding_free_batches_are_flat_and_give_the_padded_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = TrainingSpec(
        batch_size=3, gradient_accumulation_steps=1, max_seq_length=128, gradient_checkpointing=False
    )
    device = Device(False, torch.float32)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), spec, device)
    rows = [
        {
            "prompt": [{"role": "user", "content": "word " * n}],
            "completion": [{"role": "assistant", "content": "ok"}],
        }
        for n in (1, 4, 10)
    ]
    trainer = TunedeckSFTTrainer(
        model=model,
        args=sft_config(spec, output_dir=tmp_path, device=device, seed=1, has_eval=False),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(spec, num_layers=model.config.num_hidden_layers),
        padding_free=True,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert len(lengths) == 3 and len(set(lengths)) == 3
    assert batch["input_ids"].shape == (1, sum(lengths))  # one flat row, no padding
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) == 3 and "attention_mask" not in batch

    # packed rows kept apart (no cache, as in training): each row's logits are its own
    plain = load_model(str(tiny_model_dir), spec, device).eval()
    first, second = torch.randint(5, 200, (1, 7)), torch.randint(5, 200, (1, 9))
    positions = torch.cat([torch.arange(7), torch.arange(9)]).unsqueeze(0)
    with torch.no_grad():
        packed = plain(
            input_ids=torch.cat([first, second], 1), position_ids=positions, use_cache=False
        ).logits
        alone = plain(input_ids=second, use_cache=False).logits
    assert (packed[:, 7:] - alone).abs().max() < 1e-4

    # and the loss over a flat batch equals the padded batch's
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = [{"input_ids": ids} for ids in trainer.train_dataset["input_ids"]]
    losses = []
    for free in (False, True):
        batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=free)(
            examples
        )
        keys = ("input_ids", "attention_mask", "position_ids", "labels")
        with torch.no_grad():
            losses.append(float(plain(**{k: v for k, v in batch.items() if k in keys}, use_cache=False).loss))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
