"""One crawl: every live stream from Helix into one landed snapshot file, or nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from extractor.helix import HelixClient, HelixError, HelixSettings
from extractor.landing import SnapshotBuffer, land_snapshot, remove_partials
from twitch_bi import __version__
from twitch_bi.contract import CrawlMetadata
from twitch_bi.settings import Layout, Settings, SettingsError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CrawlResult:
    """What one successful crawl landed."""

    path: Path
    snapshot_at: datetime
    rows: int
    pages: int
    duplicates_removed: int
    duration_ms: int
    stop_reason: str
    retries: int = 0
    rate_limit_waits: int = 0


def make_client(settings: Settings, helix: HelixSettings | None = None) -> HelixClient:
    """A Helix client from the environment; a clear error names any missing variable."""
    missing = [
        name
        for name, value in (
            ("TWITCH_CLIENT_ID", settings.client_id),
            ("TWITCH_CLIENT_SECRET", settings.client_secret),
        )
        if not value
    ]
    if missing:
        raise SettingsError(
            f"{' and '.join(missing)} must be set to the Twitch app's credentials "
            "(see .env.example)"
        )
    assert settings.client_id is not None and settings.client_secret is not None
    return HelixClient(
        api_base_url=settings.api_base_url,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        token_url=settings.token_url,
        settings=helix or HelixSettings.from_env(),
    )


def crawl(client: HelixClient, layout: Layout) -> CrawlResult:
    """Crawl every page and land the snapshot; raise (landing nothing) if the crawl fails.

    A crawl that stops at `max_pages` fails too: a listing that long is a cursor going
    round in circles, and a file cut off at an arbitrary page would pass for a whole one.
    """
    remove_partials(layout.landing_tmp)
    started = datetime.now(UTC)
    clock = time.monotonic()
    retries_before = client.retries
    waits_before = client.rate_limiter.waits
    buffer = SnapshotBuffer()
    snapshot_at: datetime | None = None
    from_emulator = False

    client.validate_if_due()
    for page in client.pages():
        if snapshot_at is None:
            # Name the snapshot after the server's clock when it tells us: a VPS clock can
            # drift, and the emulator's clock is simulated.
            snapshot_at = (page.server_time or started).replace(microsecond=0)
            from_emulator = page.from_emulator
        try:
            buffer.add(page.streams)
        except (TypeError, ValueError, AttributeError) as error:
            raise HelixError(
                f"page {page.number} of GET /streams is not a list of streams: {error}"
            ) from None
        log.debug("page_fetched", page=page.number, streams=len(page.streams))

    pages = client.paginator.pages
    stop_reason = client.stop_reason
    if stop_reason == "max_pages":
        raise HelixError(
            f"the listing did not end within {client.settings.max_pages} pages "
            "(EXTRACT_MAX_PAGES); nothing landed"
        )
    if buffer.rows == 0 or snapshot_at is None:
        raise HelixError("Helix returned no live streams; nothing landed")
    try:
        table = buffer.to_table(snapshot_at)
    except (TypeError, ValueError) as error:
        raise HelixError(f"the streams do not fit the snapshot contract: {error}") from None

    ended = datetime.now(UTC)
    duration_ms = int((time.monotonic() - clock) * 1000)
    metadata = CrawlMetadata(
        crawl_started_at=started.isoformat(),
        crawl_ended_at=ended.isoformat(),
        duration_ms=duration_ms,
        pages=pages,
        rows=buffer.rows,
        duplicates_removed=buffer.duplicates_removed,
        source="emulator" if from_emulator else "api",
        extractor_version=__version__,
        stop_reason=stop_reason,
    )
    path = land_snapshot(
        table,
        metadata,
        snapshot_at,
        landing_dir=layout.landing_streams,
        tmp_dir=layout.landing_tmp,
    )
    return CrawlResult(
        path=path,
        snapshot_at=snapshot_at,
        rows=buffer.rows,
        pages=pages,
        duplicates_removed=buffer.duplicates_removed,
        duration_ms=duration_ms,
        stop_reason=stop_reason,
        retries=client.retries - retries_before,
        rate_limit_waits=client.rate_limiter.waits - waits_before,
    )
