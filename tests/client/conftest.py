"""The end-to-end tests' real `tunedeck run` instance (`embedded`), for the CLI client."""

from tests.e2e.conftest import embedded

__all__ = ["embedded"]
