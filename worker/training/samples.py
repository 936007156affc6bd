"""Sample generations during training: at each evaluation, a few validation prompts answered by
the adapter as it is at that step (greedy, a short reply), recorded as a ``samples`` event with
what the reference said, so a reviewer sees quality move with the loss on the job page."""

from typing import Any

import torch

SAMPLES = 3  # validation prompts answered at each evaluation
NEW_TOKENS = 32


def pick(validation: list[dict[str, list[dict[str, str]]]]) -> list[dict[str, Any]]:
    """The first few validation rows as (prompt messages, reference answer)."""
    return [
        {"prompt": row["prompt"], "reference": row["completion"][-1]["content"]}
        for row in validation[:SAMPLES]
        if row.get("prompt") and row.get("completion")
    ]


@torch.no_grad()
def answer(model: Any, tokenizer: Any, samples: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What ``model`` says to each sample's prompt now; training mode is restored after."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for sample in samples:
            inputs = tokenizer.apply_chat_template(
                sample["prompt"], add_generation_prompt=True, return_tensors="pt", return_dict=True
            ).to(device)
            generated = model.generate(
                **inputs,
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
            text = tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            users = [m["content"] for m in sample["prompt"] if m["role"] == "user"]
            out.append(
                {"prompt": users[-1] if users else "", "reference": sample["reference"], "output": text}
            )
    finally:
        if was_training:
            model.train()
    return out
