"""The serving tests' model server (`served`) and its reference answers, for the playground."""

from tests.serving.conftest import references, served

__all__ = ["references", "served"]
