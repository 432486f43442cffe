"""Requests to the running transformer (reprocess, rebuild), passed as files in state/requests/."""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from twitch_bi.contract import is_candidate_name, snapshot_time_from_name
from twitch_bi.settings import Settings, SettingsError
from twitch_bi.statefile import read_json, write_json

LOCK_FILE = "transformer.lock"
ACQUIRE_ATTEMPTS = 20


def requests_dir(settings: Settings) -> Path:
    return settings.layout.state / "requests"


def submit(settings: Settings, action: str, **values: Any) -> Path:
    """Leave a request for the transformer; it is applied by `watch` (now, or when it starts)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = requests_dir(settings) / f"{stamp}-{action}-{uuid.uuid4().hex[:6]}.json"
    write_json(path, {"action": action, **values})
    return path


def pending_requests(settings: Settings) -> list[tuple[Path, dict[str, Any]]]:
    folder = requests_dir(settings)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        value = read_json(path)
        if value is not None:
            found.append((path, value))
    return found


def request_reprocess(settings: Settings, files: list[str], since: date | None) -> list[str]:
    """Queue landed files (by name or path) or every snapshot since a date for reprocessing."""
    landing = settings.layout.landing_streams
    names = [Path(file).name for file in files]
    unknown = [
        name for name in names if not (landing / name).is_file() or not is_candidate_name(name)
    ]
    if unknown:
        raise SettingsError(f"not in {landing}: {', '.join(unknown)}")
    if not names and since is None:
        raise SettingsError("name the files to reprocess, or give --since DATE")
    submit(settings, "reprocess", files=names, since=since.isoformat() if since else None)
    return names


def landed_since(settings: Settings, since: date) -> list[str]:
    """The landed files named from `since` on: what `--since` will take, as far as names say
    (the transformer goes by the snapshot time it recorded, and logs the true count)."""
    found = []
    for path in settings.layout.landing_streams.glob("*.parquet"):
        moment = snapshot_time_from_name(path.name)
        if moment is not None and moment.date() >= since and is_candidate_name(path.name):
            found.append(path.name)
    return sorted(found)


class TransformerLock:
    """An exclusive lock held by the process that owns the warehouse; released on any exit."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.layout.state / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        # `status` probes the lock for an instant (is_held); a start that meets a probe
        # tries again rather than taking it for another transformer.
        for attempt in range(ACQUIRE_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == ACQUIRE_ATTEMPTS - 1:
                    os.close(fd)
                    return False
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def is_held(self) -> bool:
        """Whether a process holds the lock now (`watch`, or an offline `rebuild`). The
        kernel lets go of it when that process ends, `kill -9` included."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing it releases a shared lock taken here
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
