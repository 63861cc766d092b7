"""Basic auth checks in process: who gets in, the timing stand-in never being a way in, the cache of
successful checks, bcrypt's own threads and the queue that keeps a flood of guesses from a scrape."""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path

import bcrypt
import pytest

from llm_exporter.limits import Refusals
from llm_exporter.webconfig import AUTH_THREADS, BasicAuth, load_web_config

PASSWORD = "correct horse"
#: never reached when the code is right: it only turns a hang into a failure
GUARD = 60.0


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


# -- the cache, the pool and the queue, each on a checker of its own (exact counts) -----------------

def hash4(pw: str) -> str:
    return bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()


class CheckSpy:
    """Wraps the real bcrypt.checkpw: records the thread and the hash of every check."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self._real = bcrypt.checkpw
        monkeypatch.setattr(bcrypt, "checkpw", self)

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls.append((threading.current_thread().name, hashed))
        return self._real(password, hashed)


async def test_right_credentials_are_checked_by_bcrypt_once_wrong_ones_every_time() -> None:
    """A successful check is remembered; a wrong password never is, however often it is tried."""
    auth = BasicAuth({"alice": hash4(PASSWORD)})
    for _ in range(3):
        assert await auth.verify(basic("alice", PASSWORD)) is True
    assert auth.bcrypt_checks == 1
    for _ in range(3):
        assert await auth.verify(basic("alice", "wrong")) is False
    assert auth.bcrypt_checks == 4
    assert await auth.verify(basic("alice", PASSWORD)) is True
    assert auth.bcrypt_checks == 4
    auth.close()


async def test_the_cache_keeps_the_most_recently_used_credentials() -> None:
    """With room for two: a, b, then a again makes a the newest, so c pushes b out, not a."""
    auth = BasicAuth({u: hash4(u + "-pw") for u in "abc"}, cache_size=2)

    async def login(u: str) -> int:
        assert await auth.verify(basic(u, u + "-pw")) is True
        return auth.bcrypt_checks

    # bcrypt runs (the running total) for a, b, a (remembered), c (b forgotten), a (remembered),
    # b (checked again: c forgotten), a (remembered)
    assert [await login(u) for u in "abacaba"] == [1, 2, 2, 3, 3, 4, 4]
    auth.close()


async def test_scrapes_waiting_for_a_thread_find_a_success_of_the_same_credentials_remembered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three scrapes with the same right password while bcrypt is busy: two run bcrypt on the two
    threads, the third, waiting for a thread, finds their success remembered: all three get in,
    bcrypt ran twice."""
    gate, real = threading.Event(), bcrypt.checkpw

    def held(password: bytes, hashed: bytes) -> bool:
        gate.wait(GUARD)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", held)
    auth = BasicAuth({"alice": hash4(PASSWORD)})
    scrapes = asyncio.gather(*(auth.verify(basic("alice", PASSWORD)) for _ in range(3)))
    deadline = asyncio.get_running_loop().time() + GUARD
    while auth.pending < 3:  # all three past the cache on the event loop, handed to the pool
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.005)
    gate.set()
    assert await scrapes == [True] * 3
    assert auth.bcrypt_checks == AUTH_THREADS == 2
    auth.close()


async def test_bcrypt_runs_on_the_checkers_own_few_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never on the event loop nor on the executor other work waits on: on at most AUTH_THREADS
    threads of its own, however many checks wait."""
    spy = CheckSpy(monkeypatch)
    auth = BasicAuth({"alice": hash4(PASSWORD)})
    got = await asyncio.gather(*(auth.verify(basic("alice", f"wrong-{i}")) for i in range(12)))
    assert got == [False] * 12
    threads = {name for name, _ in spy.calls}
    assert len(spy.calls) == 12 and 1 <= len(threads) <= AUTH_THREADS
    assert all(name.startswith("bcrypt_") for name in threads), threads
    auth.close()


async def test_an_unknown_user_costs_as_much_as_the_cheapest_known_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing tells no user names: an unknown user is checked against a stand-in hash of the lowest
    cost among the users (10 here, beside 11), not a fixed one."""
    spy = CheckSpy(monkeypatch)
    base = hash4(PASSWORD)
    auth = BasicAuth({"bob": "$2b$11$" + base[7:], "alice": "$2b$10$" + base[7:]})
    assert await auth.verify(basic("mallory", PASSWORD)) is False
    assert [h[:7] for _, h in spy.calls] == [b"$2b$10$"]
    auth.close()


@pytest.mark.parametrize(("header", "ok"), [
    (basic("alice", PASSWORD), True),
    ("BASIC " + basic("alice", PASSWORD)[6:], True),  # the scheme is case-insensitive
    (basic("alice", PASSWORD) + "  ", True),
    (basic("alice", PASSWORD) + "!!", False),  # not base64: refused, not decoded leniently
    ("Basic " + base64.b64encode(b"alice:" + PASSWORD.encode()).decode()[:-2] + "*=", False),
    ("Basic ***", False),
    ("Basic " + base64.b64encode(b"alice").decode(), False),  # no colon: no password at all
    ("Basic " + base64.b64encode(b"\xff\xfe:" + PASSWORD.encode()).decode(), False),  # not UTF-8
    ("Bearer " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode(), False),
    ("", False),
])
async def test_authorization_headers_are_read_strictly(header: str, ok: bool) -> None:
    auth = BasicAuth({"alice": hash4(PASSWORD)})
    assert await auth.verify(header) is ok
    auth.close()


async def test_a_password_may_contain_colons() -> None:
    """RFC 7617: the user name ends at the first colon; the password is the rest, colons and all."""
    auth = BasicAuth({"alice": hash4("pass:word:")})
    assert await auth.verify(basic("alice", "pass:word:")) is True
    assert await auth.verify(basic("alice", "pass:word")) is False
    auth.close()


async def test_a_user_name_that_is_not_utf8_is_refused_not_an_error() -> None:
    """Bytes that are not UTF-8 before the colon: a 401 like any unknown user (bcrypt still runs)."""
    auth = BasicAuth({"alice": hash4(PASSWORD)})
    raw = b"ali\xe7e:" + PASSWORD.encode()
    assert await auth.verify("Basic " + base64.b64encode(raw).decode()) is False
    assert auth.bcrypt_checks == 1
    auth.close()


def flood_web_config(tmp_path: Path, how: str, refusals: Refusals) -> tuple[BasicAuth, int, Refusals]:
    """A checker as each caller makes one: the checker's default queue (32), the web-config
    loader's default, the loader given the daemon's limit and refusal counter (--web-auth-queue 3)."""
    users = {"alice": hash4(PASSWORD)}
    if how == "BasicAuth":
        auth = BasicAuth(users)
        return auth, 32, auth.refusals
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"basic_auth_users:\n  alice: '{users['alice']}'\n")
    if how == "load_web_config":
        wc = load_web_config(cfg)
        assert wc.auth is not None
        return wc.auth, 32, wc.auth.refusals
    wc = load_web_config(cfg, max_pending=3, refusals=refusals)
    assert wc.auth is not None
    return wc.auth, 3, refusals


@pytest.mark.parametrize("how", ["BasicAuth", "load_web_config", "--web-auth-queue"])
async def test_a_flood_of_wrong_passwords_is_refused_at_the_queue_and_never_delays_a_known_scrape(
        tmp_path: Path, how: str) -> None:
    """`limit` checks may wait for bcrypt; one more is refused at once and counted
    (`llm_exporter_limit_refusals_total{limit="auth_queue"}`); a scrape whose credentials passed
    before is answered from the cache even then. Once the checks are answered the queue is empty
    again: the next flood is refused exactly as the first."""
    auth, limit, refusals = flood_web_config(tmp_path, how, Refusals())
    assert await auth.verify(basic("alice", PASSWORD)) is True
    for wave in (1, 2):
        got = await asyncio.gather(*(auth.verify(basic("mallory", f"guess-{i}")) for i in range(limit + 1)),
                                   auth.verify(basic("alice", PASSWORD)))
        assert got == [False] * (limit + 1) + [True]
        assert refusals.counts["auth_queue"] == wave
        assert auth.bcrypt_checks == 1 + wave * limit  # the refused one never reached bcrypt
    assert sum(refusals.counts.values()) == 2
    auth.close()
