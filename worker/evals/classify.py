"""A SEQ_CLS job's classifier for classification evals: the base as AutoModelForSequenceClassification
with the job's label names (saved beside its adapter), the adapter (LoRA and head) on top. Loaded by
the short-lane worker that runs the eval, as the model server serves chat models only."""

from collections import Counter
from collections.abc import Iterable
from typing import Any

BATCH = 16


class Classifier:
    """Labels texts with a job's adapter or checkpoint (safetensors only; remote code as the base allows)."""

    def __init__(self, base_path: str, adapter_dir: str, *, trust_remote_code: bool = False) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        config = AutoConfig.from_pretrained(adapter_dir, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            base_path,
            config=config,
            dtype=torch.float32,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if trust_remote_code else True,
        )
        self.model = PeftModel.from_pretrained(model, adapter_dir).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(base_path, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"  # the head reads the last non-pad token by pad_token_id
        self.id2label = {int(k): str(v) for k, v in config.id2label.items()}
        self.max_length = min(int(getattr(self.tokenizer, "model_max_length", 1024) or 1024), 1024)

    def labels(self, texts: list[str]) -> list[tuple[str, int]]:
        """Each text's label and its token count, in batches."""
        import torch

        out: list[tuple[str, int]] = []
        for start in range(0, len(texts), BATCH):
            chunk = texts[start : start + BATCH]
            batch = self.tokenizer(
                chunk, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
            )
            with torch.no_grad():
                logits = self.model(**batch).logits
            lengths = batch["attention_mask"].sum(dim=-1).tolist()
            out += [
                (self.id2label[int(i)], int(n))
                for i, n in zip(logits.argmax(-1).tolist(), lengths, strict=True)
            ]
        return out


def accuracy_and_macro_f1(pairs: Iterable[tuple[Any, Any]]) -> tuple[float | None, float | None]:
    """Accuracy and macro-averaged F1 of (predicted, reference) pairs, over every label either names
    (scikit-learn's ``f1_score(average="macro")`` with its default labels, a label never predicted
    counting 0 for its F1)."""
    pairs = [(str(p), str(r)) for p, r in pairs]
    if not pairs:
        return None, None
    right = Counter(r for p, r in pairs if p == r)
    predicted = Counter(p for p, _ in pairs)
    actual = Counter(r for _, r in pairs)
    scores = []
    for label in sorted(set(predicted) | set(actual)):
        denominator = predicted[label] + actual[label]
        scores.append(2 * right[label] / denominator if denominator else 0.0)
    return sum(right.values()) / len(pairs), sum(scores) / len(scores)
