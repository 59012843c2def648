"""Password hashing: scrypt with a random salt per password, encoded self-describingly.

Why scrypt from the standard library: it is memory-hard (guessing on GPUs and
ASICs costs memory, not just cycles, unlike PBKDF2) and ``hashlib.scrypt`` ships
with CPython through OpenSSL, so Berth needs no compiled extra (bcrypt, argon2)
to store passwords properly. The parameters travel inside the encoded string,
so they can be raised later without breaking the hashes already stored.

Encoded form: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["SCHEME", "hash_password", "needs_rehash", "verify_password"]

SCHEME = "scrypt"
_N = 2**14  # CPU/memory cost: 16 MiB with r=8, about 50 ms on a current core
_R = 8
_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
# Refuse parameters that would let a tampered hash exhaust memory or CPU.
_MAX_N = 2**20
_MAX_RP = 64
_MAXMEM = 1024 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=_MAXMEM
    )


def hash_password(password: str) -> str:
    """Return the encoded scrypt hash of ``password`` under a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, _N, _R, _P, _KEY_BYTES)
    return f"{SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_RP and 0 < p <= _MAX_RP):
        return None
    if not salt or not key:
        return None
    return n, r, p, salt, key


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False for a mismatch or a malformed hash.

    The comparison runs in constant time so a mismatch leaks nothing through timing.
    """
    parsed = _parse(encoded)
    if parsed is None:
        return False
    n, r, p, salt, key = parsed
    candidate = _derive(password, salt, n, r, p, len(key))
    return hmac.compare_digest(candidate, key)


def needs_rehash(encoded: str) -> bool:
    """True when ``encoded`` was made with other parameters than the current ones."""
    parsed = _parse(encoded)
    if parsed is None:
        return True
    n, r, p, _salt, key = parsed
    return (n, r, p, len(key)) != (_N, _R, _P, _KEY_BYTES)
