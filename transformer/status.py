"""The transformer's status file, which `twitch-bi status` reads while `watch` holds the DB."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from twitch_bi.contract import is_candidate_name, snapshot_time_from_name
from twitch_bi.settings import Settings
from twitch_bi.statefile import read_json, write_json

STATUS_FILE = "transformer.status.json"
# The worker writes the status at least this often; compose calls it unhealthy after
# three missed beats.
HEARTBEAT_SECONDS = 10.0


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


def read_status(settings: Settings) -> dict[str, Any]:
    """The last status the worker wrote, with its age; `running` says if it is fresh."""
    status = read_json(settings.layout.state / STATUS_FILE) or {}
    quarantine = settings.layout.quarantine
    status["quarantined_files"] = (
        sum(1 for path in quarantine.glob("*.error.json")) if quarantine.is_dir() else 0
    )
    updated = status.get("updated_at")
    if updated:
        age = (datetime.now(UTC) - datetime.fromisoformat(updated)).total_seconds()
        status["heartbeat_age_seconds"] = round(age, 1)
        status["running"] = age <= 3 * HEARTBEAT_SECONDS
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
        f"pending:     {status.get('pending', 0)} files",
        f"quarantined: {status.get('quarantined_files', 0)} files",
        f"last file:   {status.get('last_file') or '-'}"
        f" at {status.get('last_processed_at') or '-'}",
        f"newest landed: {status.get('newest_landed') or '-'}",
        f"lag:         {status.get('lag_seconds', '-')} s behind the newest landed snapshot",
        f"last error:  {status.get('last_error') or '-'}",
    ]
    return "\n".join(lines)


def health(settings: Settings, service: str) -> str | None:
    """Why the service looks unhealthy, or None if it looks fine."""
    if service == "transformer":
        status = read_status(settings)
        if not status.get("updated_at"):
            return "no status file yet"
        if not status.get("running"):
            return f"heartbeat is {status.get('heartbeat_age_seconds')} s old"
        return None
    extractor = read_json(settings.layout.state / "extractor.status.json")
    if extractor is None:
        return "no crawl recorded yet"
    attempted = datetime.fromisoformat(extractor["last_attempt_at"])
    age = (datetime.now(UTC) - attempted).total_seconds()
    allowed = 2 * settings.extract_every_minutes * 60 + 600
    if age > allowed:
        return f"last crawl attempt {age:.0f} s ago (more than {allowed:.0f} s)"
    if extractor.get("consecutive_failures", 0) >= 3:
        failures = extractor["consecutive_failures"]
        return f"{failures} crawls failed in a row: {extractor.get('last_error')}"
    return None
