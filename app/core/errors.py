"""One error hierarchy. Every error a user can cause says what to change, and carries what its
answer needs: the HTTP status, the OpenAI-shaped ``param`` and ``code``, and any details. Domains
subclass these; the web app answers any of them by its class (app/http/errors.py) without
knowing the domain it came from.
"""

from typing import Any


class TunedeckError(Exception):
    """Something a request asked for that cannot be done as asked (or a state it cannot reach)."""

    status = 400
    code: str | None = "invalid_request"
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        if param is not None:
            self.param = param
        if code is not None:
            self.code = code

    def details(self) -> dict[str, Any]:
        """Extra fields for the error body (e.g. every problem of a refused file)."""
        return {}


class InvalidRequest(TunedeckError, ValueError):
    """A value that cannot be used (400); ``param`` names it."""

    status = 400
    code = "invalid_value"


class Unprocessable(TunedeckError, ValueError):
    """Well-formed, but it breaks a rule of its content (422): a file's rows, a job's advice."""

    status = 422
    code = "invalid_value"


class NotAuthenticated(TunedeckError):
    """No valid credentials: 401 for API clients, the login page for browsers."""

    status = 401
    code = "invalid_api_key"


class Forbidden(TunedeckError):
    """Authenticated, but not allowed to do this (403); the message says who may."""

    status = 403
    code = "forbidden"


class NotFound(TunedeckError, LookupError):
    """No such object, or not one the caller may see (404)."""

    status = 404
    code = "not_found"


class Conflict(TunedeckError):
    """Not in a state that allows it now (409): cancel first, wait for the merge, …"""

    status = 409
    code = "invalid_state"
