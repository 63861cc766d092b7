"""Fixtures of the process tests that serve TLS or basic auth."""

from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest

from tests.tlsutil import PASSWORD, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def pw_hash() -> str:
    """PASSWORD's bcrypt hash, at a low cost (the tests measure no strength)."""
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
