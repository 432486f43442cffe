"""Healthcheck pings against a local HTTP server."""

from __future__ import annotations

import structlog

from tests.extractor.support import start_pings, stop_pings
from twitch_bi import healthchecks


def test_pings_go_to_the_kind_below_the_url_with_the_body() -> None:
    pings = start_pings()

    healthchecks.ping(f"{pings.url}/abc/", "start")
    healthchecks.ping(f"{pings.url}/abc", "", "rows=1")
    healthchecks.ping(f"{pings.url}/abc", "fail", "x" * 20_000)

    stop_pings(pings)
    assert pings.paths() == ["/abc/start", "/abc", "/abc/fail"]
    assert [len(body) for _, _, body in pings.pings] == [0, 6, 10_000]
    assert pings.pings[1][2] == "rows=1"


def test_no_url_means_no_ping() -> None:
    assert healthchecks.ping(None, "start") is False


def test_a_refused_ping_is_a_warning_without_the_url() -> None:
    recorder = start_pings(status=503)
    url = f"{recorder.url}/secret-check-key-0123456789"

    with structlog.testing.capture_logs() as logs:
        sent = healthchecks.ping(url, "fail", "boom")

    stop_pings(recorder)
    assert sent is False
    assert logs == [
        {
            "event": "healthcheck_ping_failed",
            "kind": "fail",
            "error": "HTTPError",
            "log_level": "warning",
        }
    ]
