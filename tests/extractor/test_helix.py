"""Helix's auth, cursor, rate limits and faults, each against the emulator over loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from extractor.crawl import crawl
from extractor.helix import CredentialsError, HelixClient, HelixError, HelixSettings
from tests.extractor.support import FAST, client_for, landed_ids, truth_ids
from twitch_bi.emulator import EmulatorServer
from twitch_bi.settings import Layout, SettingsError


def nothing_landed(layout: Layout) -> bool:
    return not any(layout.landing_streams.iterdir()) and not any(layout.landing_tmp.iterdir())


# -- auth ----------------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused_across_crawls(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=300)
    client = client_for(server)

    for _ in range(3):
        crawl(client, Layout(data_dir))
        server.emulator.advance(900)

    stats = server.emulator.stats()
    assert stats["tokens_issued"] == 1
    assert stats["statuses"] == {"200": 9}
    assert len(list(Layout(data_dir).landing_streams.iterdir())) == 3


def test_expired_token_is_fetched_again_and_the_request_retried_once(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    # Every fifth streams request finds its token expired: requests 5 and 10 of the 12 a
    # 1,000-stream crawl then needs.
    server = make_emulator(size=1000, expire_token_after_requests=4)

    result = crawl(client_for(server), Layout(data_dir))

    stats = server.emulator.stats()
    assert stats["statuses"] == {"200": 10, "401": 2}
    assert stats["tokens_issued"] == 3
    assert set(landed_ids(result.path)) == truth_ids(server)


def test_a_second_401_fails_the_crawl_saying_the_credentials_were_refused(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=300, unauthorized_rate=1.0)
    layout = Layout(data_dir)

    with pytest.raises(CredentialsError, match=r"refused the app credentials \(TWITCH_CLIENT_ID"):
        crawl(client_for(server), layout)

    stats = server.emulator.stats()
    assert stats["statuses"] == {"401": 2}  # the request, and once more with a new token
    assert stats["tokens_issued"] == 2
    assert nothing_landed(layout)


def test_token_is_validated_at_start_and_then_about_hourly(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=100)
    now = [1000.0]
    client = client_for(server, clock=lambda: now[0])
    validations = []

    for minutes in (0, 15, 30, 45, 60, 75, 120):
        now[0] = 1000.0 + minutes * 60
        crawl(client, Layout(data_dir))
        validations.append(server.emulator.stats()["validations"])

    assert validations == [1, 1, 1, 1, 2, 2, 3]


def test_a_token_that_no_longer_validates_is_replaced_before_the_crawl(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=300)
    now = [0.0]
    client = client_for(server, clock=lambda: now[0])
    crawl(client, Layout(data_dir))
    server.emulator.revoke_all_tokens()
    server.emulator.advance(3600)
    now[0] = 3600.0

    result = crawl(client, Layout(data_dir))

    stats = server.emulator.stats()
    assert stats["validations"] == 2
    assert stats["tokens_issued"] == 2
    assert stats["statuses"] == {"200": 6}  # no streams request was refused
    assert result.rows == 300


@pytest.mark.parametrize(
    ("client_id", "secret", "status"),
    [("emulator-client-id", "wrong", 403), ("someone-else", "emulator-client-secret", 400)],
)
def test_refused_credentials_name_the_variables(
    make_emulator: Callable[..., EmulatorServer], client_id: str, secret: str, status: int
) -> None:
    server = make_emulator(size=10)
    client = HelixClient(
        api_base_url=server.api_base_url,
        client_id=client_id,
        client_secret=secret,
        token_url=server.token_url,
        settings=FAST,
    )

    with pytest.raises(CredentialsError) as refused:
        client.check_credentials()

    assert str(refused.value).startswith(
        f"Twitch refused the app credentials (TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET): {status}"
    )
    assert server.emulator.stats()["streams_requests"] == 0


# -- pagination ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "stop_reason", "pages"),
    [
        pytest.param({}, "end_of_listing", 10, id="empty-pagination-object"),
        # Three empty pages with a cursor in a row (two retries) end the listing.
        pytest.param({"empty_page_at_end": True}, "empty_page", 13, id="empty-pages-at-end"),
        # The last page hands back the cursor the first page gave: not followed.
        pytest.param(
            {"restart_cursor_at_end": True, "restart_offset": 100},
            "repeated_cursor",
            10,
            id="repeated-cursor",
        ),
        # The last page hands back a cursor to the top of the list, one never seen: the
        # page it brings starts far above the last one's viewers, and is dropped.
        pytest.param({"restart_cursor_at_end": True}, "listing_restarted", 11, id="restart"),
    ],
)
def test_listing_ends_safely_with_every_live_stream_once(
    make_emulator: Callable[..., EmulatorServer],
    data_dir: Path,
    faults: dict[str, object],
    stop_reason: str,
    pages: int,
) -> None:
    server = make_emulator(size=1000, **faults)

    result = crawl(client_for(server), Layout(data_dir))

    ids = landed_ids(result.path)
    assert (result.stop_reason, result.pages) == (stop_reason, pages)
    assert len(ids) == len(set(ids)) == 1000
    assert set(ids) == truth_ids(server)
    assert result.duplicates_removed == 0


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"empty_page_rate": 0.3}, id="empty-pages-midway"),
        pytest.param({"short_page_rate": 0.3}, id="short-pages"),
        pytest.param({"invalid_cursor_rate": 0.3}, id="invalid-cursor-retried"),
        pytest.param({"garbled_page_rate": 0.2}, id="html-instead-of-json-retried"),
    ],
)
def test_page_hiccups_still_give_a_complete_snapshot(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path, faults: dict[str, float]
) -> None:
    server = make_emulator(size=1000, **faults)

    result = crawl(client_for(server, replace(FAST, max_attempts=5)), Layout(data_dir))

    ids = landed_ids(result.path)
    assert result.stop_reason == "end_of_listing"
    assert len(ids) == len(set(ids)) == 1000
    assert set(ids) == truth_ids(server)
    # The seed makes each fault happen at least once in this crawl.
    stats = server.emulator.stats()
    assert result.pages > 10 or stats["streams_requests"] > 10


def test_a_cursor_refused_every_time_fails_after_bounded_attempts(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=1000, invalid_cursor_rate=1.0)
    layout = Layout(data_dir)

    with pytest.raises(HelixError, match="after 3 attempts on page 2: 400 invalid cursor"):
        crawl(client_for(server), layout)

    assert server.emulator.stats()["statuses"] == {"200": 1, "400": FAST.max_attempts}
    assert nothing_landed(layout)


def test_a_listing_longer_than_max_pages_fails_and_lands_nothing(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=1000)
    layout = Layout(data_dir)

    with pytest.raises(HelixError, match=r"did not end within 4 pages \(EXTRACT_MAX_PAGES\)"):
        crawl(client_for(server, replace(FAST, max_pages=4)), layout)

    assert server.emulator.stats()["streams_requests"] == 4
    assert nothing_landed(layout)


# -- rate limits ------------------------------------------------------------------------------


def test_an_empty_bucket_is_waited_out_instead_of_refused(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    # A bucket of 5 points, not Helix's 800: the client must read the size from the headers.
    server = make_emulator(size=1200, ratelimit_limit=5, ratelimit_window_seconds=0.2)
    client = client_for(server)

    result = crawl(client, Layout(data_dir))

    assert server.emulator.stats()["statuses"] == {"200": 12}  # never a 429
    assert client.rate_limiter.limit == 5
    assert result.rate_limit_waits >= 2  # after requests 5 and 10 at least
    assert result.rows == 1200


def test_429_waits_until_ratelimit_reset_then_retries(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=500, too_many_requests_rate=0.3, ratelimit_window_seconds=0.2)

    result = crawl(client_for(server), Layout(data_dir))

    stats = server.emulator.stats()
    assert stats["statuses"]["429"] >= 1
    assert stats["early_requests"] == 0  # no request came before the announced reset
    assert set(landed_ids(result.path)) == truth_ids(server)


# -- faults ------------------------------------------------------------------------------------


def test_5xx_resets_and_timeouts_are_retried_into_a_complete_snapshot(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(
        size=1500,
        server_error_rate=0.15,
        drop_connection_rate=0.1,
        slow_response_rate=0.1,
        slow_response_seconds=1.0,
    )
    client = client_for(server, replace(FAST, max_attempts=4, read_timeout=0.25))

    result = crawl(client, Layout(data_dir))

    stats = server.emulator.stats()
    faults = stats["statuses"].get("503", 0) + stats["dropped"] + stats["slowed"]
    assert min(stats["statuses"].get("503", 0), stats["dropped"], stats["slowed"]) >= 1
    assert client.retries == faults  # each fault cost exactly one retry
    assert set(landed_ids(result.path)) == truth_ids(server)


def test_retries_back_off_exponentially_then_the_crawl_fails(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=300, server_error_rate=1.0)
    layout = Layout(data_dir)
    settings = replace(FAST, max_attempts=4, backoff_factor=0.05)

    with pytest.raises(HelixError, match="failed after 4 attempts on page 1: 503"):
        crawl(client_for(server, settings), layout)

    arrivals = server.emulator.streams_arrivals
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    assert len(arrivals) == 4
    # Lower bounds only: 0.05 s, then 0.1 s, then 0.2 s (a slow machine only adds to them).
    for gap, least in zip(gaps, (0.05, 0.1, 0.2), strict=True):
        assert gap >= least * 0.95
    assert nothing_landed(layout)


def test_every_request_has_a_timeout(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    # Every answer comes 2 s late; the client waits 0.2 s, twice, for the token first.
    server = make_emulator(size=100, slow_response_rate=1.0, slow_response_seconds=2.0)
    client = client_for(server, replace(FAST, max_attempts=2, read_timeout=0.2))

    with pytest.raises(HelixError, match="token request failed: ReadTimeout"):
        crawl(client, Layout(data_dir))

    assert server.emulator.stats()["slowed"] == 2


# -- settings ----------------------------------------------------------------------------------


def test_crawl_settings_come_from_extract_variables() -> None:
    environ = {
        "EXTRACT_MAX_PAGES": "50",
        "EXTRACT_MAX_ATTEMPTS": "2",
        "EXTRACT_BACKOFF_SECONDS": "0.25",
        "EXTRACT_TIMEOUT_SECONDS": "9",
    }

    settings = HelixSettings.from_env(environ)

    assert (settings.max_pages, settings.max_attempts) == (50, 2)
    assert (settings.backoff_factor, settings.read_timeout) == (0.25, 9.0)
    assert HelixSettings.from_env({}) == HelixSettings()


@pytest.mark.parametrize("value", ["many", "0", "-3", "2.5"])
def test_a_bad_extract_variable_is_named(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^EXTRACT_MAX_PAGES must be"):
        HelixSettings.from_env({"EXTRACT_MAX_PAGES": value})
