"""Build the tiny random Llama the tests train (seconds on CPU), with SmolLM2's tokenizer."""

from pathlib import Path

TINY_CONFIG = {
    "hidden_size": 64,  # bitsandbytes packs 4-bit CPU weights in blocks of 64 inputs
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}


def save_tokenizer(out: Path) -> None:
    """SmolLM2's tokenizer + chat template, read straight from the bundled GGUF."""
    from transformers import AutoTokenizer

    from worker.bootstrap import find_smollm2_gguf

    gguf = find_smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(out)


def build_tiny_llama(out: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Llama saved as safetensors, ready to register."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_CONFIG,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    return out


if __name__ == "__main__":
    import sys

    build_tiny_llama(Path(sys.argv[1]))
