"""The extractor's two entry points: one crawl now (`extract`) and the service (`schedule`)."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import requests
import schedule
import structlog

from extractor.crawl import CrawlResult, crawl, make_client
from extractor.helix import HelixClient, HelixError
from twitch_bi import healthchecks
from twitch_bi.logs import redact
from twitch_bi.settings import Settings
from twitch_bi.statefile import read_json, write_json

log = structlog.get_logger(__name__)
STATUS_FILE = "extractor.status.json"


class Shutdown(BaseException):
    """SIGTERM or SIGINT: stop now. A BaseException so that no `except Exception` eats it."""


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def run_crawl(client: HelixClient, settings: Settings) -> CrawlResult | None:
    """One crawl with its logging, status file and healthcheck pings; never raises an error."""
    layout = settings.layout.ensure()
    structlog.contextvars.bind_contextvars(crawl_started_at=datetime.now(UTC).isoformat())
    _record_start(settings)
    healthchecks.ping(settings.healthcheck_url, "start")
    try:
        result = crawl(client, layout)
    except (HelixError, requests.RequestException, OSError, ValueError) as error:
        reason = redact(f"{type(error).__name__}: {error}")
        log.error("crawl_failed", error=reason)
        _record(settings, ok=False, error=reason)
        healthchecks.ping(settings.healthcheck_url, "fail", reason)
        return None
    finally:
        structlog.contextvars.unbind_contextvars("crawl_started_at")

    log.info(
        "snapshot_landed",
        file=result.path.name,
        rows=result.rows,
        pages=result.pages,
        duplicates_removed=result.duplicates_removed,
        duration_ms=result.duration_ms,
        stop_reason=result.stop_reason,
    )
    _record(settings, ok=True, result=result)
    summary = f"rows={result.rows} pages={result.pages} duration_ms={result.duration_ms}"
    healthchecks.ping(settings.healthcheck_url, "", summary)
    return result


def _record_start(settings: Settings) -> None:
    # The container health check tells a crawl still running (the first one at start, a
    # long one) from a service that stopped crawling by this mark.
    path = settings.layout.state / STATUS_FILE
    status: dict[str, Any] = read_json(path) or {}
    status["crawl_started_at"] = datetime.now(UTC).isoformat()
    status["interval_minutes"] = settings.extract_every_minutes
    write_json(path, status)


def _record(
    settings: Settings, *, ok: bool, result: CrawlResult | None = None, error: str | None = None
) -> None:
    path = settings.layout.state / STATUS_FILE
    status: dict[str, Any] = read_json(path) or {}
    now = datetime.now(UTC).isoformat()
    status.pop("crawl_started_at", None)
    status["last_attempt_at"] = now
    status["interval_minutes"] = settings.extract_every_minutes
    if ok and result is not None:
        status.update(
            last_success_at=now,
            last_file=result.path.name,
            last_rows=result.rows,
            last_pages=result.pages,
            last_duration_ms=result.duration_ms,
            consecutive_failures=0,
        )
    else:
        status.update(
            last_error=error, consecutive_failures=status.get("consecutive_failures", 0) + 1
        )
    write_json(path, status)


def run_extract(settings: Settings) -> int:
    """`twitch-bi extract`: one crawl; exit 0 if a file landed, 1 if not."""
    client = make_client(settings)
    previous = signal.signal(signal.SIGTERM, _raise_shutdown)
    try:
        return 0 if run_crawl(client, settings) is not None else 1
    except Shutdown as stop:
        log.warning("crawl_interrupted", signal=str(stop))
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_schedule(settings: Settings) -> int:
    """`twitch-bi schedule`: a crawl at start, then one every EXTRACT_EVERY_MINUTES."""
    client = make_client(settings)
    interval = settings.extract_every_minutes
    scheduler = schedule.Scheduler()

    def job() -> None:
        started = time.monotonic()
        run_crawl(client, settings)
        took = time.monotonic() - started
        if took > interval * 60:
            # `schedule` runs jobs in this thread, so crawls never overlap; a long one
            # only pushes the next one back.
            log.warning(
                "crawl_overran_interval", duration_s=round(took, 1), interval_minutes=interval
            )

    scheduler.every(max(1, round(interval * 60))).seconds.do(job)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGINT, _raise_shutdown)
    log.info("extractor_started", interval_minutes=interval, api=settings.api_base_url)
    try:
        scheduler.run_all()
        while True:
            idle = scheduler.idle_seconds
            time.sleep(min(max(idle or 0.0, 0.0), 1.0))
            scheduler.run_pending()
    except Shutdown as stop:
        log.info("extractor_stopped", signal=str(stop))
        return 0
