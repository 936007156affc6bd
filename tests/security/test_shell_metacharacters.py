"""Shell code in names and fields stays text: nothing is ever run through a shell, names are
stored and shown literally (escaped in pages), and fields with patterns (a job's suffix) refuse
it, and markup, with a 422."""

from pathlib import Path

import pytest

from tests.e2e.support import Instance
from tests.security.conftest import SCRIPT, SHELL_NAME, FinishedJob

pytestmark = pytest.mark.slow

PWNED = [Path("/tmp/pwned-tunedeck"), Path("/tmp/pwned-tunedeck2")]
SHELL = "$(touch /tmp/pwned-tunedeck); rm -rf x"


def test_shell_metacharacters_in_names_and_fields_stay_inert(
    instance: Instance, finished_job: FinishedJob
) -> None:
    for path in PWNED:
        path.unlink(missing_ok=True)
    with instance.client() as client:
        stored = client.get(f"/api/v1/files/{finished_job.file_id}").json()
        assert stored["filename"] == SHELL_NAME == finished_job.filename  # literally, `/` and all
        page = client.get(f"/datasets/{finished_job.file_id}", headers={"Accept": "text/html"}).text
        assert "$(touch /tmp/pwned-tunedeck); rm -rf x `touch /tmp/pwned-tunedeck2`.jsonl" in page
        job_page = client.get(f"/jobs/{finished_job.id}", headers={"Accept": "text/html"}).text
        assert SHELL_NAME in job_page

        body = {"model": "tiny-llama", "training_file": finished_job.file_id, "suffix": SHELL}
        for suffix in (SHELL, SCRIPT):  # a suffix becomes part of model names: letters, digits, . _ - only
            refused = client.post("/api/v1/fine_tuning/jobs", json={**body, "suffix": suffix})
            assert refused.status_code == 422 and refused.json()["error"]["param"] == "suffix"
        for field, value in (("model", SHELL), ("training_file", SHELL)):
            answer = client.post("/api/v1/fine_tuning/jobs", json={**body, "suffix": None, field: value})
            assert answer.status_code in (400, 404, 422) and answer.json()["error"]["param"] == field, (
                answer.text
            )
        for path, payload in (
            ("/api/v1/presets", {"name": SHELL, "hyperparameters": {"n_epochs": 1}}),
            ("/api/v1/me/api_keys", {"name": SHELL}),
            ("/api/v1/models", {"name": "shell", "path": SHELL}),
        ):
            answer = client.post(path, json=payload)
            assert answer.status_code < 500, (path, answer.text)
            if answer.status_code == 200 and "name" in answer.json():
                assert answer.json()["name"] == SHELL  # kept as text
    assert not any(path.exists() for path in PWNED), "a name was run as shell code"
