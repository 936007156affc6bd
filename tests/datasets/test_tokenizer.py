"""The web side's torch-free token counts agree with transformers' apply_chat_template."""

from pathlib import Path

from app.core.rows import to_messages
from app.datasets.tokenizer import ChatTokenizer


def test_counts_match_transformers(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(tiny_model_dir)
    ours = ChatTokenizer(tiny_model_dir)
    rows = [
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
        {
            "instruction": "Write a haiku.",
            "input": "",
            "output": "Loss falls step by step\nthe adapter learns",
        },
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris."},
            ]
        },
    ]
    for row in rows:
        messages = to_messages(row)
        expected = reference.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        assert ours.count(messages) == len(expected)
        assert ours.render(messages) == reference.apply_chat_template(messages, tokenize=False)


def test_web_side_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, app.main, app.cli; "
        "print([m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
