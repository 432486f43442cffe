"""The transformer's status file, which `twitch-bi status` reads while `watch` holds the DB."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from transformer.control import TransformerLock
from twitch_bi.contract import is_candidate_name, snapshot_time_from_name
from twitch_bi.settings import Settings
from twitch_bi.statefile import read_json, write_json

STATUS_FILE = "transformer.status.json"
# The worker writes the status at least this often; compose calls it unhealthy after
# three missed beats.
HEARTBEAT_SECONDS = 10.0
# A heartbeat thread writes the status during batches too; should one long DuckDB call
# still hold it up, a stale beat with files pending is tolerated this long.
BACKLOG_BEAT_SECONDS = 900.0

# What the extractor writes (extractor/service.py), read here for its health check.
EXTRACTOR_STATUS_FILE = "extractor.status.json"
# A crawl may overrun the interval by this much before the extractor counts as stuck.
CRAWL_GRACE_SECONDS = 600.0
# This many failed crawls in a row make the extractor unhealthy (Twitch down, credentials).
MAX_FAILED_CRAWLS = 3
# One batch taking longer than this means the worker is stuck (a normal one takes seconds).
STUCK_BATCH_SECONDS = 1800.0


def write_status(settings: Settings, **values: Any) -> None:
    status = dict(values)
    status["updated_at"] = datetime.now(UTC).isoformat()
    status["pid"] = os.getpid()
    write_json(settings.layout.state / STATUS_FILE, status)


def newest_landed(settings: Settings) -> tuple[str | None, datetime | None]:
    """The newest snapshot file in landing/streams/, by the time in its name."""
    folder = settings.layout.landing_streams
    newest: tuple[str | None, datetime | None] = (None, None)
    if not folder.is_dir():
        return newest
    for entry in os.scandir(folder):
        if not is_candidate_name(entry.name):
            continue
        moment = snapshot_time_from_name(entry.name)
        if moment is not None and (newest[1] is None or moment > newest[1]):
            newest = (entry.name, moment)
    return newest


def read_status(settings: Settings, check_lock: bool = True) -> dict[str, Any]:
    """The last status the worker wrote, with its age; `running` says if it is fresh and
    a transformer holds the warehouse. Health checks, which run beside `watch` every few
    seconds, leave the lock alone (`check_lock=False`) and go by the beat."""
    status = read_json(settings.layout.state / STATUS_FILE) or {}
    quarantine = settings.layout.quarantine
    status["quarantined_files"] = (
        sum(1 for path in quarantine.glob("*.error.json")) if quarantine.is_dir() else 0
    )
    updated = status.get("updated_at")
    if updated:
        age = (datetime.now(UTC) - datetime.fromisoformat(updated)).total_seconds()
        status["heartbeat_age_seconds"] = round(age, 1)
        # A fresh beat alone would say `running` for a while after a stop or a kill.
        status["running"] = age <= 3 * HEARTBEAT_SECONDS and (
            not check_lock or TransformerLock(settings).is_held()
        )
    else:
        status["running"] = False
    return status


def format_status(status: dict[str, Any]) -> str:
    if not status.get("updated_at"):
        return "transformer: no status yet (has `twitch-bi watch` ever run on this DATA_DIR?)"
    lines = [
        f"transformer: {'running' if status.get('running') else 'NOT running'}"
        f" (heartbeat {status.get('heartbeat_age_seconds')} s ago, pid {status.get('pid')})",
        f"processed:   {status.get('processed', 0)} files",
        f"pending:     {status.get('pending', 0)} files"
        + (
            f" ({status['waiting_incomplete']} still being written)"
            if status.get("waiting_incomplete")
            else ""
        ),
        f"failed:      {status.get('failed', 0)} files (retried later)",
        f"quarantined: {status.get('quarantined_files', 0)} files",
        f"last file:   {status.get('last_file') or '-'}"
        f" at {status.get('last_processed_at') or '-'}",
        f"newest landed: {status.get('newest_landed') or '-'}",
        f"lag:         {status.get('lag_seconds', '-')} s behind the newest landed snapshot",
        f"last error:  {status.get('last_error') or '-'}"
        + (f" (at {status['last_error_at']})" if status.get("last_error_at") else ""),
    ]
    return "\n".join(lines)


def health(settings: Settings, service: str) -> str | None:
    """Why the service looks unhealthy, or None if it looks fine (container health checks)."""
    if service == "transformer":
        return _transformer_health(read_status(settings, check_lock=False))
    status = read_json(settings.layout.state / EXTRACTOR_STATUS_FILE)
    return _extractor_health(status, settings.extract_every_minutes)


def _transformer_health(status: dict[str, Any]) -> str | None:
    if not status.get("updated_at"):
        return "no status file yet (still starting?)"
    busy = _seconds_since(status.get("busy_since"))
    if busy is not None and busy > STUCK_BATCH_SECONDS:
        return f"one batch has been running for {busy:.0f} s"
    age = float(status.get("heartbeat_age_seconds") or 0.0)
    if age <= 3 * HEARTBEAT_SECONDS:
        return None
    pending = int(status.get("pending") or 0)
    if pending and age <= BACKLOG_BEAT_SECONDS:
        return None  # working through a backlog: the worker beats only between batches
    return f"heartbeat is {age:.0f} s old ({pending} files pending)"


def _extractor_health(status: dict[str, Any] | None, every_minutes: float) -> str | None:
    if not status:
        return "no crawl started yet"
    interval = float(status.get("interval_minutes") or every_minutes) * 60
    failures = int(status.get("consecutive_failures") or 0)
    if failures >= MAX_FAILED_CRAWLS:
        return f"the last {failures} crawls failed: {status.get('last_error')}"

    running = _seconds_since(status.get("crawl_started_at"))
    if running is not None:
        if running > interval + CRAWL_GRACE_SECONDS:
            return f"a crawl has been running for {running:.0f} s"
        return None  # a crawl is under way: the first one at start, or a long one

    idle = _seconds_since(status.get("last_attempt_at"))
    if idle is None:
        return "no crawl recorded yet"
    if idle > interval + CRAWL_GRACE_SECONDS:
        return f"no crawl for {idle:.0f} s, though one is due every {interval:.0f} s"
    return None


def _seconds_since(moment: str | None) -> float | None:
    if not moment:
        return None
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(moment)).total_seconds()
    except (TypeError, ValueError):
        return None
