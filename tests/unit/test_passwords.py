"""Password hashing: scrypt, salted, self-describing, constant-time verify."""

from __future__ import annotations

import pytest

from berth.identity import passwords


def test_hash_verifies_the_right_password_only() -> None:
    encoded = passwords.hash_password("correct horse")
    assert passwords.verify_password("correct horse", encoded)
    assert not passwords.verify_password("correct hors", encoded)
    assert not passwords.verify_password("", encoded)


def test_hash_is_self_describing_and_salted() -> None:
    a = passwords.hash_password("same")
    b = passwords.hash_password("same")
    assert a != b  # a fresh salt each time
    scheme, n, r, p, salt, key = a.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert salt and key and "same" not in a
    assert not passwords.needs_rehash(a)


def test_unicode_passwords() -> None:
    encoded = passwords.hash_password("pässwörd-日本")
    assert passwords.verify_password("pässwörd-日本", encoded)
    assert not passwords.verify_password("passwort-日本", encoded)


def test_other_parameters_still_verify_and_ask_for_rehash() -> None:
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=1024, r=8, p=1, dklen=32)

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode().rstrip("=")

    encoded = f"scrypt$1024$8$1${b64(salt)}${b64(key)}"
    assert passwords.verify_password("pw", encoded)
    assert passwords.needs_rehash(encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "bcrypt$12$abc",
        "scrypt$16384$8$1$salt",  # too few parts
        "scrypt$x$8$1$c2FsdA$a2V5",  # not a number
        "scrypt$1000$8$1$c2FsdA$a2V5",  # n not a power of two
        "scrypt$4194304$8$1$c2FsdA$a2V5",  # n too large (memory exhaustion)
        "scrypt$16384$8$1$!!!$a2V5",  # bad base64
        "scrypt$16384$8$1$$a2V5",  # empty salt
    ],
)
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert not passwords.verify_password("anything", encoded)
    assert passwords.needs_rehash(encoded)
