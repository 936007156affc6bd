"""Salted, deliberately slow password hashes (scrypt from the standard library).

A hash reads ``scrypt$<n>$<r>$<p>$<salt>$<digest>`` (base64), so the cost can rise later
without breaking stored hashes.
"""

import base64
import hashlib
import hmac
import secrets
from functools import cache

N, R, P = 2**15, 8, 1  # 32 MiB and ~0.1 s per guess on one core
_MAXMEM = 256 * 2**20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; malformed hashes never match."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@cache
def dummy_hash() -> str:
    """Checked when a username does not exist, so a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))
