"""Which landed files are ready: new or changed by content, and whole (not being copied)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from transformer.ledger import FAILED, PROCESSING, QUARANTINED, Entry, Ledger, file_facts
from transformer.snapshots import has_parquet_footer
from twitch_bi.contract import is_candidate_name, snapshot_time_from_name

log = structlog.get_logger(__name__)


@dataclass
class _Waiting:
    size: int
    since: float
    closed: bool


class Arrivals:
    """Looks at landing/streams/ against the ledger; remembers files still being written."""

    def __init__(
        self,
        folder: Path,
        ledger: Ledger,
        settle_seconds: float,
        stall_seconds: float,
        finish_quarantine: Callable[[Path], None],
    ) -> None:
        self.folder = folder
        self.ledger = ledger
        self.settle_seconds = settle_seconds
        self.stall_seconds = stall_seconds
        self._finish_quarantine = finish_quarantine
        self._waiting: dict[str, _Waiting] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def pending(
        self, names: Iterable[str] | None = None, closed: Iterable[str] = (), scan: bool = False
    ) -> list[Path]:
        """See `Worker.pending`."""
        hinted = set(names) if names is not None else set()
        if names is None or scan:
            candidates = [path for path in self.folder.iterdir() if is_candidate_name(path.name)]
        else:
            wanted = hinted | set(self._waiting)
            candidates = [self.folder / name for name in sorted(wanted) if is_candidate_name(name)]
        closed = set(closed)
        entries = self.ledger.entries(
            None if names is None or scan else [path.name for path in candidates]
        )
        ready = []
        for path in candidates:
            try:
                stat = path.stat()
            except FileNotFoundError:
                self._waiting.pop(path.name, None)
                continue
            if not path.is_file():
                continue
            entry = entries.get(path.name)
            if not self._needs_processing(path, stat, entry, path.name in hinted):
                continue
            if self._is_complete(path, stat, path.name in closed):
                ready.append(path)
        return sorted(ready, key=snapshot_order)

    def _needs_processing(
        self, path: Path, stat: os.stat_result, entry: Entry | None, hinted: bool
    ) -> bool:
        if entry is None or entry.force:
            return True
        if entry.status == PROCESSING:
            return False  # an interrupted batch: recover() owns it
        same_stat = entry.size_bytes == stat.st_size and entry.mtime_ns == stat.st_mtime_ns
        if same_stat and not hinted:
            unchanged = True
        else:
            try:
                unchanged = file_facts(path).content_hash == entry.content_hash
            except FileNotFoundError:
                return False
        if not unchanged:
            return True  # new content under a known name: it replaces that snapshot
        if entry.status == QUARANTINED:
            if entry.quarantined_at is not None:
                return True  # moved out before and dropped again on purpose: try again
            # Its ledger row says quarantined but a crash came before the move: finish it.
            self._finish_quarantine(path)
            return False
        if entry.status == FAILED:
            return entry.next_attempt_at is None or entry.next_attempt_at <= datetime.now(UTC)
        if not same_stat:
            self.ledger.upsert(path.name, mtime_ns=stat.st_mtime_ns, size_bytes=stat.st_size)
        if hinted or not same_stat:
            log.info("file_unchanged_skipped", file=path.name, status=entry.status)
        return False

    def _is_complete(self, path: Path, stat: os.stat_result, closed: bool) -> bool:
        if has_parquet_footer(path):
            self._waiting.pop(path.name, None)
            return True
        now = time.monotonic()
        waiting = self._waiting.get(path.name)
        if waiting is None or waiting.size != stat.st_size:
            waiting = _Waiting(stat.st_size, now, closed=False)
            self._waiting[path.name] = waiting
            log.debug("file_incomplete_waiting", file=path.name, size_bytes=stat.st_size)
        waiting.closed = waiting.closed or closed
        limit = self.settle_seconds if waiting.closed else self.stall_seconds
        # Every write moves the modification time: a file found at start-up that has
        # not changed for long is not being copied any more.
        still = max(now - waiting.since, time.time() - stat.st_mtime)
        if still >= limit:
            del self._waiting[path.name]
            return True  # it stopped growing without a footer: let validation say why
        return False


def snapshot_order(path: Path) -> tuple[str, str]:
    """Oldest snapshot time in the name first; names without one first of all."""
    moment = snapshot_time_from_name(path.name)
    return (moment.isoformat() if moment else "", path.name)
