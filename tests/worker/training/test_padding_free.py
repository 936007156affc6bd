"""Padding-free batches (what the pipeline asks for where FlashAttention 2 is installed): trl 1.16
refuses ``padding_free`` beside ``max_length``, so the trainer truncates rows as usual and flattens
each batch in its own collator — one sequence, position ids restarting at every row, no pad token.
Only a variable-length kernel keeps those rows apart: on SDPA a packed row sees the rows before it
(shown here), which is why CPU workers keep padded, length-bucketed batches."""

from pathlib import Path

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


def test_padding_free_batches_are_flat_and_truncated_and_sdpa_would_mix_them(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = TrainingSpec(batch_size=3, max_seq_length=24, gradient_checkpointing=False)
    device = Device(False, torch.float32)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), spec, device)
    rows = [
        {
            "prompt": [{"role": "user", "content": "word " * n}],
            "completion": [{"role": "assistant", "content": "ok"}],
        }
        for n in (3, 8, 40)
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
    lengths = sorted(min(len(ids), 24) for ids in trainer.train_dataset["input_ids"])
    assert batch["input_ids"].shape == (1, sum(lengths))  # one flat row, each row cut at max_seq_length
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) == 3 and "attention_mask" not in batch

    # SDPA does not keep packed rows apart: the second row's logits change with the first before it
    plain = load_model(str(tiny_model_dir), spec, device).eval()
    first, second = torch.randint(5, 200, (1, 7)), torch.randint(5, 200, (1, 9))
    positions = torch.cat([torch.arange(7), torch.arange(9)]).unsqueeze(0)
    with torch.no_grad():
        packed = plain(input_ids=torch.cat([first, second], 1), position_ids=positions).logits[:, 7:]
        alone = plain(input_ids=second).logits
    assert (packed - alone).abs().max() > 1e-3
