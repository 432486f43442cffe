"""The extractor's two entry points: one crawl now (`extract`) and the service (`schedule`)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import schedule
import structlog

from extractor.crawl import CrawlResult, crawl, make_client
from extractor.helix import CredentialsError, HelixClient, HelixError
from twitch_bi import healthchecks
from twitch_bi.logs import redact
from twitch_bi.settings import Settings, SettingsError
from twitch_bi.statefile import read_json, write_json

log = structlog.get_logger(__name__)
STATUS_FILE = "extractor.status.json"


class Shutdown(BaseException):
    """SIGTERM or SIGINT: stop now. A BaseException so that no `except Exception` eats it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    # Once is enough: a second signal must not interrupt the way out.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Shutdown(signum)


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into `Shutdown` in the main thread, wherever it is waiting.

    A crawl blocked on a socket or in a backoff sleep is interrupted at once: Python runs
    the handler when the system call returns EINTR (PEP 475), and the exception unwinds the
    crawl, which removes its partial file on the way out.
    """
    previous = {sig: signal.signal(sig, _raise_shutdown) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_crawl(client: HelixClient, settings: Settings) -> CrawlResult | None:
    """One crawl with its logging, status file and healthcheck pings; never raises an error."""
    structlog.contextvars.bind_contextvars(crawl_started_at=datetime.now(UTC).isoformat())
    healthchecks.ping(settings.healthcheck_url, "start")
    try:
        layout = settings.layout.ensure()
        _record_start(settings)
        result = crawl(client, layout)
    except HelixError as error:
        reason = redact(str(error))
        log.error("crawl_failed", error=reason)
        _failed(settings, reason)
        return None
    except Exception as error:
        # Not a failure Helix is known for: keep the traceback, and keep the service going.
        reason = redact(f"{type(error).__name__}: {error}")
        log.exception("crawl_failed", error=reason)
        _failed(settings, reason)
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
        retries=result.retries,
        rate_limit_waits=result.rate_limit_waits,
    )
    try:
        _record(settings, ok=True, result=result)
    except OSError as error:
        log.warning("status_not_written", error=redact(str(error)))
    summary = (
        f"rows={result.rows} pages={result.pages} duration_ms={result.duration_ms} "
        f"duplicates_removed={result.duplicates_removed} file={result.path.name}"
    )
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


def _failed(settings: Settings, reason: str) -> None:
    try:
        _record(settings, ok=False, error=reason)
    except OSError as error:
        log.warning("status_not_written", error=redact(str(error)))
    healthchecks.ping(settings.healthcheck_url, "fail", reason)


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


def _check_credentials(client: HelixClient, settings: Settings) -> None:
    """Refused credentials end the command with one line; an unreachable Twitch does not."""
    try:
        client.check_credentials()
    except CredentialsError as error:
        healthchecks.ping(settings.healthcheck_url, "fail", str(error))
        raise SettingsError(str(error)) from None
    except HelixError as error:
        # Twitch may be down just now; the crawl tries again and reports the failure.
        log.warning("credentials_not_checked", error=redact(str(error)))


def run_extract(settings: Settings) -> int:
    """`twitch-bi extract`: one crawl; exit 0 if a file landed, 1 if not."""
    client = make_client(settings)
    with _stop_on_signals():
        try:
            _check_credentials(client, settings)
            return 0 if run_crawl(client, settings) is not None else 1
        except Shutdown as stop:
            log.warning("crawl_interrupted", signal=str(stop))
            return 128 + stop.signum


def run_schedule(settings: Settings) -> int:
    """`twitch-bi schedule`: a crawl at start, then one every EXTRACT_EVERY_MINUTES.

    Crawls run in this one thread, so they never overlap. The interval counts from the
    start of one crawl to the start of the next, so snapshots stay evenly spaced; a crawl
    that takes longer delays the next one, which then starts as soon as it ends.
    """
    client = make_client(settings)
    interval = timedelta(minutes=settings.extract_every_minutes)
    last_start = datetime.now()
    crawling = False

    def crawl_job() -> None:
        nonlocal last_start, crawling
        last_start = datetime.now()
        started = time.monotonic()
        crawling = True
        try:
            run_crawl(client, settings)
        except Exception as error:
            # run_crawl reports its own failures; this is the last guard of the service.
            log.exception("crawl_failed", error=redact(f"{type(error).__name__}: {error}"))
        crawling = False
        took = time.monotonic() - started
        if took > interval.total_seconds():
            log.warning(
                "crawl_overran_interval",
                duration_s=round(took, 1),
                interval_minutes=settings.extract_every_minutes,
            )

    def validate_job() -> None:
        try:
            client.validate_if_due()
        except HelixError as error:
            log.warning("token_validation_failed", error=redact(str(error)))

    scheduler = schedule.Scheduler()
    crawls = scheduler.every(max(1, round(interval.total_seconds()))).seconds.do(crawl_job)
    scheduler.every(max(1, round(client.settings.validate_every_seconds))).seconds.do(validate_job)

    with _stop_on_signals():
        try:
            # Refused credentials do not stop the service: each crawl fails with a line
            # naming the variables, pings /fail, and the health check turns unhealthy.
            log.info(
                "extractor_started",
                interval_minutes=settings.extract_every_minutes,
                api=settings.api_base_url,
            )
            crawls.run()
            while True:
                # `schedule` counts the interval from the end of a run; count it from the start.
                crawls.next_run = max(last_start + interval, datetime.now())
                idle = scheduler.idle_seconds or 0.0
                time.sleep(min(max(idle, 0.0), 1.0))
                scheduler.run_pending()
        except Shutdown as stop:
            if crawling:
                log.warning("crawl_interrupted", signal=str(stop))
            log.info("extractor_stopped", signal=str(stop))
            return 0
