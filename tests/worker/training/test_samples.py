"""Sample generations during training: each evaluation answers a few validation prompts with the
adapter as it is then, and the job page shows them beside the reference, step by step."""

from fastapi.testclient import TestClient

from app.core.db import read_session
from app.core.tables import JobEvent
from tests.factories import INSTRUCTION_ROWS, create_job, run_job, upload


def test_each_evaluation_answers_validation_prompts_shown_on_the_job_page(
    client: TestClient, tiny_model: str, sqlite_only: None
) -> None:
    file_id = upload(client, INSTRUCTION_ROWS, validation_split="0.1")  # 36 train, 4 validation rows
    job_id = create_job(client, tiny_model, file_id, hp={"n_epochs": 2, "batch_size": 8})
    assert run_job(job_id) == "succeeded"
    with read_session() as session:
        found = [
            e.data
            for e in session.query(JobEvent).filter(JobEvent.job_id == job_id).order_by(JobEvent.id)  # type: ignore[arg-type]
            if e.data and e.data.get("kind") == "samples"
        ]
    assert [f["step"] for f in found] == [5, 10]  # one per epoch's evaluation (36 rows / 8 per step)
    for batch in found:
        assert len(batch["samples"]) == 3
        for sample in batch["samples"]:
            assert (
                sample["reference"].split(" is ")[0] in sample["prompt"]
            )  # "3 plus 4" in "What is 3 plus 4?"
            assert isinstance(sample["output"], str)
    page = client.get(f"/jobs/{job_id}", headers={"accept": "text/html"}).text
    assert 'id="samples-table"' in page and "<th>step 5</th>" in page and "<th>step 10</th>" in page
    assert found[0]["samples"][0]["reference"] in page
