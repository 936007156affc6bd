"""What a training step's activations take, for the advisor's estimate (app/jobs/advisor.py) and
the worker's ``gradient_checkpointing: auto`` (worker/training/pipeline.py): one formula, both
sides. Rough by design: bf16/fp32 activations of a decoder layer per token, plus the logits."""


def activation_bytes(
    *, tokens: int, hidden_size: int, num_layers: int, vocab_size: int, checkpointing: bool
) -> int:
    """Peak activation memory of a step over ``tokens`` tokens (batch x sequence length): with
    checkpointing only each layer's input is kept (~2 values per hidden unit), without it every
    intermediate (~34); the logits and their gradient are fp32 either way."""
    per_layer_token = (2 if checkpointing else 34) * hidden_size
    return int(tokens * per_layer_token * max(num_layers, 1) + tokens * vocab_size * 4 * 2)
