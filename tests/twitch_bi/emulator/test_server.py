"""The emulator over loopback HTTP: Helix's answers, headers, faults and the admin endpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from tests.conftest import REPO
from twitch_bi.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorServer
from twitch_bi.emulator.server import decode_cursor, encode_cursor, load_fixture


class Helix:
    """A bare Helix client: one token, then raw streams requests."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        token = requests.post(
            server.token_url,
            data={
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "grant_type": "client_credentials",
            },
            timeout=10,
        ).json()["access_token"]
        self.headers = {"Client-Id": DEFAULT_CLIENT_ID, "Authorization": f"Bearer {token}"}

    def streams(self, after: str | None = None, **extra: Any) -> requests.Response:
        params = {"first": 100, **({"after": after} if after else {}), **extra}
        return requests.get(
            f"{self.server.api_base_url}/streams", params=params, headers=self.headers, timeout=10
        )


def test_recorded_pages_are_served_byte_for_byte(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    pages = (
        "2021-08-13-multi-login-escaped-ampersand-twitchdev-issue476.json",
        "null-tags-docs-derived-twitch_api.json",
    )
    helix = Helix(make_emulator(fixture_pages=pages))

    first = helix.streams()
    second = helix.streams(after="anything")

    assert first.content == load_fixture(pages[0])
    assert b'"Science \\u0026 Technology"' in first.content
    assert second.content == load_fixture(pages[1])


def test_pages_are_written_like_twitch_writes_json(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    helix = Helix(make_emulator(size=3000))

    bodies = []
    cursor = None
    for _ in range(30):
        response = helix.streams(after=cursor)
        bodies.append(response.content)
        cursor = response.json()["pagination"].get("cursor")

    raw = b"".join(bodies)
    assert b"&" not in raw and b"\\u0026" in raw  # Go's encoder escapes &, < and >
    assert "🎮".encode() in raw  # other characters travel as UTF-8, not \u escapes
    assert cursor is None


def test_pagination_walks_the_sorted_listing_with_offset_cursors(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    server = make_emulator(size=250)
    helix = Helix(server)

    pages = [helix.streams().json()]
    while cursor := pages[-1]["pagination"].get("cursor"):
        pages.append(helix.streams(after=cursor).json())

    streams = [stream for page in pages for stream in page["data"]]
    truth = server.emulator.truth()
    assert [len(page["data"]) for page in pages] == [100, 100, 50]
    assert [stream["id"] for stream in streams] == [str(i) for i in truth.stream_id.tolist()]
    assert [decode_cursor(page["pagination"]["cursor"]) for page in pages[:2]] == [100, 200]
    assert pages[-1]["pagination"] == {}


def test_faults_are_replayed_exactly_by_seed(make_emulator: Callable[..., EmulatorServer]) -> None:
    faults = {
        "server_error_rate": 0.2,
        "too_many_requests_rate": 0.1,
        "invalid_cursor_rate": 0.2,
        "empty_page_rate": 0.3,
        "short_page_rate": 0.2,
    }

    def statuses(seed: int) -> list[tuple[int, int]]:
        helix = Helix(make_emulator(size=500, seed=seed, **faults))
        answers = []
        for _ in range(40):
            response = helix.streams(after=encode_cursor(100))
            answers.append((response.status_code, len(response.json().get("data", []))))
        return answers

    first, again, other = statuses(7), statuses(7), statuses(8)

    assert first == again
    assert first != other
    kinds = {status for status, _ in first} | {size for status, size in first if status == 200}
    assert {200, 400, 429, 503, 0, 20, 100} <= kinds


def test_the_rate_limit_bucket_has_helix_headers_and_refuses_when_empty(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    helix = Helix(make_emulator(size=100, ratelimit_limit=3, ratelimit_window_seconds=30))

    answers = [helix.streams() for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [answer.headers["Ratelimit-Remaining"] for answer in answers] == ["2", "1", "0", "0"]
    assert {answer.headers["Ratelimit-Limit"] for answer in answers} == {"3"}
    reset = int(answers[0].headers["Ratelimit-Reset"])
    assert time.time() + 29 < reset <= time.time() + 31


def test_helix_refuses_requests_without_a_good_token(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    server = make_emulator(size=10)
    helix = Helix(server)
    url = f"{server.api_base_url}/streams"

    missing = requests.get(url, headers={"Client-Id": DEFAULT_CLIENT_ID}, timeout=10)
    mismatch = requests.get(url, headers={**helix.headers, "Client-Id": "other"}, timeout=10)
    validated = requests.get(
        f"{server.url}/oauth2/validate",
        headers={"Authorization": helix.headers["Authorization"].replace("Bearer", "OAuth")},
        timeout=10,
    )
    requests.post(f"{server.url}/_emulator/revoke", timeout=10)
    revoked = helix.streams()

    assert (missing.status_code, missing.json()["message"]) == (401, "OAuth token is missing")
    assert mismatch.json()["message"] == "Client ID and OAuth token do not match"
    assert validated.status_code == 200
    assert validated.json()["client_id"] == DEFAULT_CLIENT_ID
    assert (revoked.status_code, revoked.json()["message"]) == (401, "Invalid OAuth token")


def test_drift_moves_the_clock_with_every_streams_request(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    server = make_emulator(size=300, drift_seconds_per_request=7)
    start = server.emulator.now
    helix = Helix(server)

    dates = [parsedate_to_datetime(helix.streams().headers["Date"]) for _ in range(3)]

    assert dates == [start + timedelta(seconds=7 * n) for n in (1, 2, 3)]


def test_truth_over_http_is_the_population_at_that_time(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    server = make_emulator(size=200)
    at = server.emulator.now + timedelta(hours=3)

    answer = requests.get(
        f"{server.url}/_emulator/truth", params={"at": at.isoformat()}, timeout=10
    ).json()

    live = server.emulator.truth(at)
    assert [stream["id"] for stream in answer["streams"]] == [str(i) for i in live.stream_id]
    assert [stream["viewer_count"] for stream in answer["streams"]] == live.viewers.tolist()


def test_latency_is_added_to_every_request(make_emulator: Callable[..., EmulatorServer]) -> None:
    server = make_emulator(size=10, latency_ms=120)

    started = time.monotonic()
    helix = Helix(server)
    helix.streams()
    took = time.monotonic() - started

    assert took >= 2 * 0.12  # a lower bound: the token, then the page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"no_such_fault": 1}, "unknown emulator setting 'no_such_fault'"),
        ({"server_error_rate": 2}, "server_error_rate must be between 0 and 1, got 2.0"),
        ({"latency_ms": "fast"}, "latency_ms must be a float, got 'fast'"),
        ({"fixture_pages": ["nope.json"]}, "no recorded page named 'nope.json' in the fixtures"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    make_emulator: Callable[..., EmulatorServer], change: dict[str, Any], message: str
) -> None:
    server = make_emulator(size=10)

    answer = requests.post(
        f"{server.url}/_emulator/config", json={"latency_ms": 5, **change}, timeout=10
    )

    assert (answer.status_code, answer.json()["message"]) == (400, message)
    assert server.emulator.config.latency_ms == 0.0


def test_emulator_command_serves_until_sigterm(tmp_path: Any) -> None:
    log = tmp_path / "emulator.log"
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "twitch_bi.cli", "emulator", "--port", "0", "--size", "50"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "LOG_FORMAT": "json"},
        )
        try:
            url = ""
            deadline = time.monotonic() + 30
            while not url and time.monotonic() < deadline:
                lines = [json.loads(line) for line in log.read_text().splitlines()]
                url = next((ln["url"] for ln in lines if ln["event"] == "emulator_started"), "")
                time.sleep(0.05)
            stats = requests.get(f"{url}/_emulator/stats", timeout=10).json()
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)

    assert stats["streams_requests"] == 0
    assert code == 0


def test_emulator_command_refuses_bad_settings_in_one_line() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "twitch_bi.cli", "emulator", "--config", '{"size": "big"}'],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        "twitch-bi: emulator settings: size must be a int, got 'big'"
    ]
