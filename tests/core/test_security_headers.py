"""Every page and API response carries the security headers; the browser tests (which fail on
any console error) show the pages work under the content security policy."""

from fastapi.testclient import TestClient


def test_pages_and_api_carry_security_headers(client: TestClient) -> None:
    for path in ("/", "/jobs", "/api/v1/fine_tuning/jobs", "/static/js/charts.js", "/no-such-page"):
        response = client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "unsafe-eval" not in policy and "script-src 'self' 'unsafe-inline'" not in policy
    docs = client.get("/docs")  # Swagger UI needs its inline script
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers
    assert docs.headers["x-content-type-options"] == "nosniff"
