"""Job, checkpoint and file ids that try to climb out of the artifacts dir (`../`, `%2e%2e%2f`,
`..%2f`, doubly encoded) get a 4xx, never a file from elsewhere. Downloads look their artifact up
by id in the database; the id never becomes a path."""

from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import INSTRUCTION_ROWS, upload
from tests.security.conftest import raw_request

MARKER = b"TOP-SECRET-OUTSIDE-THE-ARTIFACTS"
TRAVERSALS = [
    "../../../../../../etc/passwd",
    "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "..%252f..%252fsecret.txt",
    "..",
    "%2e%2e",
    "..%2fsecret.txt",
    "ftjob-x%2f..%2f..%2f..%2fsecret.txt",
]


def test_ids_that_climb_out_of_the_artifacts_dir_get_4xx_and_no_file(
    client: TestClient, configured: Path, tiny_model: str
) -> None:
    for place in (
        configured / "secret.txt",
        configured / "artifacts" / "secret.txt",
        configured.parent / "secret.txt",
    ):
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(MARKER)
    file_id = upload(client, INSTRUCTION_ROWS[:12])
    job = client.post("/api/v1/fine_tuning/jobs", json={"model": tiny_model, "training_file": file_id})
    job_id = job.json()["id"]
    templates = [
        "/api/v1/fine_tuning/jobs/{x}/adapter",
        "/api/v1/fine_tuning/jobs/{x}/merged",
        "/api/v1/fine_tuning/jobs/{x}/checkpoints",
        f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints/{{x}}/download",
        f"/api/v1/fine_tuning/jobs/{job_id}/{{x}}/adapter",
        "/api/v1/files/{x}",
        "/api/v1/files/{x}/rows",
        "/jobs/{x}",
        "/datasets/{x}/rows",
        "/static/{x}",
        "/static/js/{x}",
    ]
    for template in templates:
        for traversal in TRAVERSALS:
            path = template.format(x=traversal)
            status, body = raw_request(client.app, "GET", path, dict(client.headers))
            assert 400 <= status < 500, (path, status)
            assert MARKER not in body and b"root:x:0:0" not in body, path
            assert not body.startswith(b"PK"), f"{path} answered with a zip"
    # the same through an ordinary HTTP client, which normalises the dots the way browsers do
    for traversal in TRAVERSALS:
        answer = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints/{traversal}/download")
        assert 400 <= answer.status_code < 500 and MARKER not in answer.content
