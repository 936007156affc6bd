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


def _copy_tokenizer(source: Path, out: Path) -> None:
    import shutil

    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).exists():
            shutil.copy(source / name, out / name)


def build_tiny_gpt2(out: Path, tokenizer_from: Path) -> Path:
    """A 2-layer GPT-2 (Conv1D c_attn / c_proj / c_fc), sharing the tiny Llama's tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out.mkdir(parents=True, exist_ok=True)
    _copy_tokenizer(tokenizer_from, out)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=49152, n_embd=64, n_layer=2, n_head=4, n_positions=256)
    GPT2LMHeadModel(config).save_pretrained(out)
    return out


def build_tiny_bert(out: Path, tokenizer_from: Path) -> Path:
    """A 2-layer BERT (query / key / value / dense), sharing the tiny Llama's tokenizer."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    out.mkdir(parents=True, exist_ok=True)
    _copy_tokenizer(tokenizer_from, out)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=49152, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
    )
    BertForMaskedLM(config).save_pretrained(out)
    return out


def build_tiny_t5(out: Path, tokenizer_from: Path) -> Path:
    """A 2-layer T5 encoder-decoder (q / k / v / o, wi / wo), sharing the tiny Llama's tokenizer."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    out.mkdir(parents=True, exist_ok=True)
    _copy_tokenizer(tokenizer_from, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=49152,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=pad,
    )
    T5ForConditionalGeneration(config).save_pretrained(out)
    return out
