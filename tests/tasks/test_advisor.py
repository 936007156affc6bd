"""The advisor refuses a task_type that does not fit the data's format or the base's
architecture, and says what to change."""

from pathlib import Path

from fastapi.testclient import TestClient

from tests.tasks.conftest import advice, register, upload

CLASSIFICATION = [{"text": f"text {i}", "label": "a" if i % 2 else "b"} for i in range(12)]
INSTRUCTION = [{"instruction": f"Question {i}?", "output": f"Answer {i}."} for i in range(12)]
CHAT = [
    {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "hello"}]}
    for i in range(12)
]
T5 = {"target_modules": "q,k,v,o"}


def errors(result: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(c["code"], c["message"]) for c in result["checks"] if c["level"] == "error"]


def test_classification_data_needs_seq_cls_and_seq_cls_needs_classification_data(
    client: TestClient, tiny_model: str
) -> None:
    classification, instruction = upload(client, CLASSIFICATION), upload(client, INSTRUCTION)
    [(code, message)] = errors(advice(client, tiny_model, classification))
    assert code == "task_data_mismatch" and "set task_type to SEQ_CLS" in message
    [(code, message)] = errors(advice(client, tiny_model, instruction, hp={"task_type": "SEQ_CLS"}))
    assert code == "task_data_mismatch" and "SEQ_CLS trains on classification rows (text, label)" in message
    assert not advice(client, tiny_model, classification, hp={"task_type": "SEQ_CLS"})["blocked"]
    mixed = advice(
        client, tiny_model, classification, hp={"task_type": "SEQ_CLS"}, validation_file=instruction
    )
    [(_, message)] = errors(mixed)
    assert message.startswith("validation_file is in instruction format")


def test_seq2seq_needs_an_encoder_decoder_base_and_instruction_rows(
    client: TestClient, tiny_model: str, tiny_t5: str
) -> None:
    instruction, chat = upload(client, INSTRUCTION), upload(client, CHAT)
    seq2seq = {"task_type": "SEQ_2_SEQ_LM"}
    [(code, message)] = errors(advice(client, tiny_model, instruction, hp=seq2seq))
    assert code == "task_model_mismatch" and "needs an encoder-decoder base (T5, BART)" in message
    assert "tiny-llama is decoder-only" in message
    assert not advice(client, tiny_t5, instruction, hp=seq2seq | T5)["blocked"]
    [(code, message)] = errors(advice(client, tiny_t5, chat, hp=seq2seq | T5))
    assert code == "task_data_mismatch" and "chat format" in message
    assert "upload those, or set task_type to CAUSAL_LM" in message


def test_decoder_tasks_on_an_encoder_decoder_base_are_refused(client: TestClient, tiny_t5: str) -> None:
    [(code, message)] = errors(advice(client, tiny_t5, upload(client, INSTRUCTION), hp=T5))
    assert code == "task_model_mismatch" and "CAUSAL_LM needs a decoder-only base" in message
    assert "set task_type to SEQ_2_SEQ_LM" in message
    result = advice(client, tiny_t5, upload(client, CLASSIFICATION), hp=T5 | {"task_type": "SEQ_CLS"})
    [(code, message)] = errors(result)
    assert "SEQ_CLS needs a decoder-only or encoder-only base" in message


def test_encoder_only_base_warns_for_causal_lm_and_takes_seq_cls(
    client: TestClient, configured: Path, tiny_bert_dir: Path
) -> None:
    bert = register("tiny-bert", tiny_bert_dir)
    hp = {"target_modules": "query,key,value"}
    result = advice(client, bert, upload(client, INSTRUCTION), hp=hp)
    assert not result["blocked"]
    assert any(c["code"] == "task_model_mismatch" and c["level"] == "warning" for c in result["checks"])
    result = advice(client, bert, upload(client, CLASSIFICATION), hp=hp | {"task_type": "SEQ_CLS"})
    assert not result["blocked"] and not any(c["code"] == "task_model_mismatch" for c in result["checks"])


def test_a_mismatched_job_is_refused_with_the_task_type_param(client: TestClient, tiny_model: str) -> None:
    body = {"model": tiny_model, "training_file": upload(client, CLASSIFICATION)}
    response = client.post("/api/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "task_data_mismatch" and error["param"] == "task_type"
