"""What the containers' health checks (`twitch-bi status --check`) say, state by state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from transformer.status import (
    BACKLOG_BEAT_SECONDS,
    CRAWL_GRACE_SECONDS,
    HEARTBEAT_SECONDS,
    health,
)
from twitch_bi.cli import main
from twitch_bi.settings import Settings
from twitch_bi.statefile import write_json

EVERY_MINUTES = 15.0


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, extract_every_minutes=EVERY_MINUTES)


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def extractor_state(settings: Settings, **values: Any) -> None:
    write_json(settings.layout.state / "extractor.status.json", values)


def transformer_state(settings: Settings, **values: Any) -> None:
    write_json(settings.layout.state / "transformer.status.json", values)


def test_extractor_without_any_crawl_is_unhealthy(settings: Settings) -> None:
    assert health(settings, "extractor") == "no crawl started yet"


def test_extractor_is_healthy_during_its_first_crawl(settings: Settings) -> None:
    extractor_state(settings, crawl_started_at=ago(120), interval_minutes=EVERY_MINUTES)

    assert health(settings, "extractor") is None


def test_extractor_is_healthy_during_a_crawl_longer_than_the_interval(
    settings: Settings,
) -> None:
    extractor_state(
        settings,
        crawl_started_at=ago(EVERY_MINUTES * 60 + 60),
        last_attempt_at=ago(2 * EVERY_MINUTES * 60 + 60),
        consecutive_failures=0,
        interval_minutes=EVERY_MINUTES,
    )

    assert health(settings, "extractor") is None


def test_extractor_with_a_crawl_stuck_past_the_grace_is_unhealthy(settings: Settings) -> None:
    extractor_state(
        settings,
        crawl_started_at=ago(EVERY_MINUTES * 60 + CRAWL_GRACE_SECONDS + 60),
        interval_minutes=EVERY_MINUTES,
    )

    assert "a crawl has been running for" in (health(settings, "extractor") or "")


def test_extractor_between_two_crawls_is_healthy(settings: Settings) -> None:
    extractor_state(
        settings,
        last_attempt_at=ago(EVERY_MINUTES * 60 - 5),
        last_success_at=ago(EVERY_MINUTES * 60 - 5),
        consecutive_failures=0,
        interval_minutes=EVERY_MINUTES,
    )

    assert health(settings, "extractor") is None


def test_extractor_that_stopped_crawling_is_unhealthy(settings: Settings) -> None:
    extractor_state(
        settings,
        last_attempt_at=ago(EVERY_MINUTES * 60 + CRAWL_GRACE_SECONDS + 60),
        consecutive_failures=0,
        interval_minutes=EVERY_MINUTES,
    )

    assert "no crawl for" in (health(settings, "extractor") or "")


def test_extractor_reads_the_interval_it_was_started_with(settings: Settings) -> None:
    # The checker's own EXTRACT_EVERY_MINUTES may differ (a `status` run by hand).
    extractor_state(
        settings, last_attempt_at=ago(50 * 60), consecutive_failures=0, interval_minutes=60
    )

    assert health(settings, "extractor") is None


def test_two_failed_crawls_in_a_row_are_tolerated(settings: Settings) -> None:
    extractor_state(
        settings,
        last_attempt_at=ago(10),
        consecutive_failures=2,
        last_error="HelixError: 503",
        interval_minutes=EVERY_MINUTES,
    )

    assert health(settings, "extractor") is None


def test_three_failed_crawls_in_a_row_are_unhealthy_even_while_a_fourth_runs(
    settings: Settings,
) -> None:
    extractor_state(
        settings,
        crawl_started_at=ago(1),
        last_attempt_at=ago(10),
        consecutive_failures=3,
        last_error="CredentialsError: Twitch refused the app credentials",
        interval_minutes=EVERY_MINUTES,
    )

    reason = health(settings, "extractor") or ""

    assert reason.startswith("the last 3 crawls failed")
    assert "refused the app credentials" in reason


def test_transformer_without_a_status_file_is_unhealthy(settings: Settings) -> None:
    assert "no status file yet" in (health(settings, "transformer") or "")


def test_transformer_with_a_fresh_heartbeat_is_healthy(settings: Settings) -> None:
    transformer_state(settings, updated_at=ago(1), pending=0)

    assert health(settings, "transformer") is None


def test_transformer_that_missed_three_beats_while_idle_is_unhealthy(
    settings: Settings,
) -> None:
    transformer_state(settings, updated_at=ago(3 * HEARTBEAT_SECONDS + 15), pending=0)

    assert "heartbeat is" in (health(settings, "transformer") or "")


def test_transformer_between_batches_of_a_backlog_is_healthy(settings: Settings) -> None:
    transformer_state(settings, updated_at=ago(300), pending=120)

    assert health(settings, "transformer") is None


def test_transformer_stuck_on_a_backlog_is_unhealthy(settings: Settings) -> None:
    transformer_state(settings, updated_at=ago(BACKLOG_BEAT_SECONDS + 60), pending=120)

    assert "120 files pending" in (health(settings, "transformer") or "")


def test_status_check_exit_code_and_reason(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    extractor_state(settings, crawl_started_at=ago(5), interval_minutes=EVERY_MINUTES)

    healthy = main(["status", "--check", "extractor"])
    healthy_out = capsys.readouterr()
    unhealthy = main(["status", "--check", "transformer"])
    unhealthy_out = capsys.readouterr()

    assert (healthy, healthy_out.out) == (0, "extractor: healthy\n")
    assert unhealthy == 1
    assert unhealthy_out.err.startswith("transformer: unhealthy: no status file yet")
