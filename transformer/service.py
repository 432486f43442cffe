"""The transformer service (`watch`) and the one-shot `rebuild`."""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from transformer import control
from transformer.status import HEARTBEAT_SECONDS, newest_landed, write_status
from transformer.worker import Worker, WorkerOptions
from twitch_bi.contract import is_candidate_name
from twitch_bi.settings import Settings

log = structlog.get_logger(__name__)

TICK_SECONDS = 0.5
DEBOUNCE_SECONDS = 0.1
# SIGTERM lets the running batch finish; if it has not after this long, the process
# leaves it staged (recover() resumes it at start) and exits 0 before compose's
# stop_grace_period (2 minutes in compose.yml) turns to SIGKILL.
SHUTDOWN_DEADLINE_SECONDS = 25.0
_EVENTS = {"created", "modified", "moved", "closed"}  # not opened / closed_no_write: our reads


class LandingHandler(FileSystemEventHandler):
    """Only filters and enqueues: the worker does the work."""

    def __init__(self, names: queue.Queue[tuple[str, bool]]) -> None:
        self.names = names

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in _EVENTS:
            return
        # A rename into place or a closed writer says the file is whole (if it is Parquet).
        closed = event.event_type in {"closed", "moved"}
        for path in (event.src_path, getattr(event, "dest_path", "")):
            name = Path(os.fsdecode(path)).name if path else ""
            if name and is_candidate_name(name):
                self.names.put((name, closed))


def _observer(settings: Settings, handler: LandingHandler) -> BaseObserver:
    # inotify sees nothing through Docker Desktop bind mounts, NFS or SMB; polling does.
    observer: BaseObserver = PollingObserver(timeout=1.0) if settings.watch_polling else Observer()
    settings.layout.landing_streams.mkdir(parents=True, exist_ok=True)
    observer.schedule(handler, str(settings.layout.landing_streams), recursive=False)
    observer.daemon = True
    observer.start()
    return observer


def _observer_alive(observer: BaseObserver) -> bool:
    # The observer thread outlives its emitters: when the watched folder is deleted or
    # remounted, inotify's emitter thread stops and the observer goes on, deaf.
    return observer.is_alive() and all(emitter.is_alive() for emitter in observer.emitters)


class WatchService:
    """Observer first, then a scan of what is already there, then events and reconciliation."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or WorkerOptions()
        self.stopping = threading.Event()
        self.names: queue.Queue[tuple[str, bool]] = queue.Queue()
        self.handler = LandingHandler(self.names)
        self._status: dict[str, Any] = {}
        self._status_lock = threading.Lock()
        self._busy_since: str | None = None

    def run(self) -> int:
        lock = control.TransformerLock(self.settings)
        if not lock.acquire():
            log.error("transformer_already_running", lock=str(lock.path))
            return 1
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        worker = Worker(self.settings, self.options)
        worker.stop_requested = self.stopping.is_set
        try:
            # Observer first: a file landing during the start-up scan is not missed.
            observer = _observer(self.settings, self.handler)
            self._busy_since = datetime.now(UTC).isoformat()
            heartbeat.start()
            worker.start()
            self._busy_since = None
            log.info(
                "transformer_started",
                landing=str(self.settings.layout.landing_streams),
                polling=self.settings.watch_polling,
                observer=type(observer).__name__,
            )
            self._loop(worker, observer)
        except Exception:
            # dbt cannot parse, the observer cannot start again, the disk is gone: exit
            # non-zero and let compose restart the service.
            log.exception("transformer_failed")
            return 1
        finally:
            self.stopping.set()
            worker.close()
            lock.release()
        log.info("transformer_stopped")
        return 0

    def _loop(self, worker: Worker, observer: BaseObserver) -> None:
        full_scan_due = 0.0  # scan everything on the first pass
        while not self.stopping.is_set():
            names, closed = self._drain()
            if not _observer_alive(observer):
                log.error("observer_died", restarting=True)
                observer.stop()
                observer = _observer(self.settings, self.handler)
                log.info("observer_restarted")
                full_scan_due = 0.0
            if self._apply_requests(worker):
                full_scan_due = 0.0

            now = time.monotonic()
            if now >= full_scan_due:
                pending = worker.pending(names, closed, scan=True)
                full_scan_due = now + self.options.reconcile_seconds
                self._refresh_status(worker, len(pending))
            elif names or worker.waiting:
                pending = worker.pending(names, closed)
                if names or pending:  # not every tick of a long copy: it scans landing/
                    self._refresh_status(worker, len(pending))
            else:
                pending = []
            if pending:
                self._process(worker, pending)
                self._refresh_status(worker, 0)
            elif not names:
                # Nothing came in this tick: housekeeping costs no file its latency.
                worker.checkpoint()
        observer.stop()
        observer.join(timeout=5)

    def _drain(self) -> tuple[set[str], set[str]]:
        names: set[str] = set()
        closed: set[str] = set()
        try:
            first = self.names.get(timeout=TICK_SECONDS)
        except queue.Empty:
            return names, closed
        # A copy or rename fires several events; let them all arrive, then work once.
        time.sleep(DEBOUNCE_SECONDS)
        item: tuple[str, bool] | None = first
        while item is not None:
            names.add(item[0])
            if item[1]:
                closed.add(item[0])
            try:
                item = self.names.get_nowait()
            except queue.Empty:
                item = None
        return names, closed

    def _process(self, worker: Worker, pending: list[Path]) -> None:
        batches = worker.plan(pending)
        for index, batch in enumerate(batches):
            if self.stopping.is_set():
                log.info("batches_deferred_for_shutdown", batches=len(batches) - index)
                return
            self._busy_since = datetime.now(UTC).isoformat()
            try:
                worker.process_batch(batch)
            except Exception as error:
                # A bug or a broken disk: the batch stays staged and is resumed below.
                worker.note_error(f"{type(error).__name__}: {error}")
                log.exception("batch_crashed", files=len(batch))
                self._resume_later(worker)
                return
            finally:
                self._busy_since = None
            self._refresh_status(worker, sum(len(rest) for rest in batches[index + 1 :]))

    def _resume_later(self, worker: Worker) -> None:
        # Give the disk or the database a moment before the staged batch is replayed.
        self.stopping.wait(self.options.retry_base_seconds)
        if not self.stopping.is_set():
            try:
                worker.recover()
            except Exception:
                log.exception("batch_resume_failed")

    def _apply_requests(self, worker: Worker) -> bool:
        applied = False
        for path, request in control.pending_requests(self.settings):
            action = request.get("action")
            if action == "reprocess":
                names = [name for name in request.get("files") or [] if worker.ledger.get(name)]
                worker.force(names)
                if request.get("since"):
                    since = datetime.combine(
                        date.fromisoformat(request["since"]), datetime.min.time(), UTC
                    )
                    names += worker.force_since(since)
                log.info("reprocess_requested", files=len(names))
            elif action == "rebuild":
                log.info("rebuild_requested")
                worker.reset()
            else:
                log.warning("request_ignored", request=path.name, action=action)
            path.unlink(missing_ok=True)
            applied = True
        return applied

    def _refresh_status(self, worker: Worker, pending: int) -> None:
        with self._status_lock:
            self._status = current_status(self.settings, worker, pending)
        self._write_status()

    def _write_status(self) -> None:
        with self._status_lock:
            values = dict(self._status)
        write_status(self.settings, busy_since=self._busy_since, **values)

    def _heartbeat(self) -> None:
        """Write the status file every few seconds, even while a long batch runs."""
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self._write_status()
            except OSError:
                log.exception("heartbeat_failed")
        self._write_status()


def current_status(settings: Settings, worker: Worker, pending: int) -> dict[str, Any]:
    """What `twitch-bi status` shows, from the ledger and landing/streams/."""
    counts = worker.ledger.counts()
    last_file, last_at, last_snapshot = worker.ledger.last_processed()
    newest_name, newest_at = newest_landed(settings)
    lag = None
    if newest_at is not None and last_snapshot is not None:
        lag = max(0.0, (newest_at - last_snapshot).total_seconds())
    return {
        "processed": counts.get("done", 0),
        "pending": pending + worker.waiting,
        "waiting_incomplete": worker.waiting,
        "failed": counts.get("failed", 0),
        "quarantined": counts.get("quarantined", 0),
        "last_file": last_file,
        "last_processed_at": last_at.isoformat() if last_at else None,
        "newest_landed": newest_name,
        "lag_seconds": lag,
        "last_error": worker.last_error,
        "last_error_at": worker.last_error_at.isoformat() if worker.last_error_at else None,
    }


def run_watch(settings: Settings, options: WorkerOptions | None = None) -> int:
    """`twitch-bi watch`: run until SIGTERM or SIGINT, then finish the batch and exit 0."""
    service = WatchService(settings, options or WorkerOptions.from_env())

    def stop(signum: int, _frame: FrameType | None) -> None:
        if service.stopping.is_set():
            return
        log.info("transformer_stopping", signal=signal.Signals(signum).name)
        service.stopping.set()
        deadline = threading.Timer(SHUTDOWN_DEADLINE_SECONDS, _leave_batch_staged)
        deadline.daemon = True
        deadline.start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return service.run()


def _leave_batch_staged() -> None:
    log.warning("shutdown_deadline_reached", seconds=SHUTDOWN_DEADLINE_SECONDS, resumed_at="start")
    logging.shutdown()
    sys.stdout.flush()
    # The batch is staged in the warehouse and every later step is replayed at start,
    # so leaving now loses nothing (the kill -9 test proves it).
    os._exit(0)


def run_rebuild(settings: Settings, options: WorkerOptions | None = None) -> int:
    """`twitch-bi rebuild`: here if no transformer runs, else ask the running one to do it."""
    lock = control.TransformerLock(settings)
    if not lock.acquire():
        control.submit(settings, "rebuild")
        log.info("rebuild_requested", by="running transformer")
        return 0
    try:
        worker = Worker(settings, options or WorkerOptions.from_env())
        try:
            worker.start()
            worker.reset()
            started = time.monotonic()
            results = worker.process(worker.pending())
            log.info(
                "rebuild_finished",
                files=sum(len(result.files) for result in results),
                rows=sum(result.rows for result in results),
                quarantined=sum(len(result.quarantined) for result in results),
                duration_ms=int((time.monotonic() - started) * 1000),
            )
            # `status` shows the rebuilt warehouse, not what a stopped `watch` last wrote.
            write_status(settings, busy_since=None, **current_status(settings, worker, 0))
        finally:
            worker.close()
    finally:
        lock.release()
    return 0
