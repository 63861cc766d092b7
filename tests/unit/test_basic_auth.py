"""Basic auth checks in process: who gets in, and that the timing stand-in is never a way in."""

from __future__ import annotations

import asyncio
import base64

import bcrypt
import pytest

from llm_exporter.webconfig import BasicAuth

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def auth() -> BasicAuth:
    return BasicAuth({"alice": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()})


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def verify(auth: BasicAuth, header: str | None) -> bool:
    return asyncio.run(auth.verify(header))


@pytest.mark.parametrize("pw", ["dummy", PASSWORD, "", "x"])
def test_an_unknown_user_never_gets_in(auth: BasicAuth, pw: str) -> None:
    """Not with the password of the hash an unknown user is checked against for timing ("dummy"),
    not with a known user's password, not with an empty one; bcrypt still runs (same time)."""
    before = auth.bcrypt_checks
    assert verify(auth, basic("mallory", pw)) is False
    assert verify(auth, basic("", pw)) is False
    assert auth.bcrypt_checks == before + 2


def test_the_right_user_and_password_get_in_and_nothing_else(auth: BasicAuth) -> None:
    """alice with her password: yes; her name with another password, or no header: no."""
    assert verify(auth, basic("alice", PASSWORD)) is True
    assert verify(auth, basic("alice", "dummy")) is False
    assert verify(auth, basic("alice", PASSWORD + " ")) is False
    assert verify(auth, basic("Alice", PASSWORD)) is False
    assert verify(auth, None) is False
