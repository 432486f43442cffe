"""The transformer service (`watch`) and the one-shot `rebuild`."""

from __future__ import annotations

import queue
import signal
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType

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

RECONCILE_SECONDS = 60.0  # events are hints; a full scan of landing/ is the truth
TICK_SECONDS = 0.5
DEBOUNCE_SECONDS = 0.1


class LandingHandler(FileSystemEventHandler):
    """Only filters and enqueues: the worker does the work."""

    def __init__(self, names: queue.Queue[str]) -> None:
        self.names = names

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in {"created", "modified", "moved", "closed"}:
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            name = Path(str(path)).name if path else ""
            if name and is_candidate_name(name):
                self.names.put(name)


def _observer(settings: Settings, handler: LandingHandler) -> BaseObserver:
    # inotify sees nothing through Docker Desktop bind mounts, NFS or SMB; polling does.
    observer: BaseObserver = PollingObserver(timeout=1.0) if settings.watch_polling else Observer()
    observer.schedule(handler, str(settings.layout.landing_streams), recursive=False)
    observer.daemon = True
    observer.start()
    return observer


class WatchService:
    """Observer first, then a scan of what is already there, then events and reconciliation."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or WorkerOptions()
        self.stopping = threading.Event()
        self.names: queue.Queue[str] = queue.Queue()
        self.handler = LandingHandler(self.names)
        self.pending_count = 0

    def run(self) -> int:
        lock = control.TransformerLock(self.settings)
        if not lock.acquire():
            log.error("transformer_already_running", lock=str(lock.path))
            return 1
        worker = Worker(self.settings, self.options)
        try:
            worker.start()
            observer = _observer(self.settings, self.handler)
            log.info(
                "transformer_started",
                landing=str(self.settings.layout.landing_streams),
                polling=self.settings.watch_polling,
            )
            self._loop(worker, observer)
            observer.stop()
            observer.join(timeout=5)
        finally:
            worker.close()
            lock.release()
        log.info("transformer_stopped")
        return 0

    def _loop(self, worker: Worker, observer: BaseObserver) -> None:
        full_scan_due = 0.0  # scan everything on the first pass
        beat_due = 0.0
        while not self.stopping.is_set():
            names = self._drain()
            if not observer.is_alive():
                log.error("observer_died_restarting")
                observer = _observer(self.settings, self.handler)
                full_scan_due = 0.0
            if self._apply_requests(worker):
                full_scan_due = 0.0

            now = time.monotonic()
            if now >= full_scan_due or worker.waiting:
                pending = worker.pending()
                full_scan_due = now + RECONCILE_SECONDS
            elif names:
                pending = worker.pending(names)
            else:
                pending = []
            self.pending_count = len(pending) + worker.waiting

            if pending:
                self._process(worker, pending)
                beat_due = 0.0
            if time.monotonic() >= beat_due:
                self._write_status(worker)
                beat_due = time.monotonic() + HEARTBEAT_SECONDS

        observer.stop()
        self._write_status(worker)

    def _drain(self) -> set[str]:
        names: set[str] = set()
        try:
            names.add(self.names.get(timeout=TICK_SECONDS))
        except queue.Empty:
            return names
        # A copy or rename fires several events; let them all arrive, then work once.
        time.sleep(DEBOUNCE_SECONDS)
        while True:
            try:
                names.add(self.names.get_nowait())
            except queue.Empty:
                return names

    def _process(self, worker: Worker, pending: list[Path]) -> None:
        batches = worker.plan(pending)
        for index, batch in enumerate(batches):
            if self.stopping.is_set():
                log.info("batches_deferred_for_shutdown", batches=len(batches) - index)
                return
            try:
                worker.process_batch(batch)
            except Exception as error:
                worker.last_error = f"{type(error).__name__}: {error}"
                log.exception("batch_crashed", files=len(batch))
            self.pending_count = sum(len(rest) for rest in batches[index + 1 :])
            self._write_status(worker)

    def _apply_requests(self, worker: Worker) -> bool:
        applied = False
        for path, request in control.pending_requests(self.settings):
            action = request.get("action")
            if action == "reprocess":
                names = list(request.get("files") or [])
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

    def _write_status(self, worker: Worker) -> None:
        counts = worker.ledger.counts()
        last_file, last_at, last_snapshot = worker.ledger.last_processed()
        newest_name, newest_at = newest_landed(self.settings)
        lag = None
        if newest_at is not None:
            lag = max(0.0, (newest_at - last_snapshot).total_seconds()) if last_snapshot else None
        write_status(
            self.settings,
            processed=counts.get("done", 0),
            pending=self.pending_count,
            failed=counts.get("failed", 0),
            quarantined=counts.get("quarantined", 0),
            last_file=last_file,
            last_processed_at=last_at.isoformat() if last_at else None,
            newest_landed=newest_name,
            lag_seconds=lag,
            last_error=worker.last_error,
        )


def run_watch(settings: Settings) -> int:
    """`twitch-bi watch`: run until SIGTERM or SIGINT, then finish the batch and exit 0."""
    service = WatchService(settings)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("transformer_stopping", signal=signal.Signals(signum).name)
        service.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return service.run()


def run_rebuild(settings: Settings) -> int:
    """`twitch-bi rebuild`: here if no transformer runs, else ask the running one to do it."""
    lock = control.TransformerLock(settings)
    if not lock.acquire():
        control.submit(settings, "rebuild")
        log.info("rebuild_requested", by="running transformer")
        return 0
    try:
        worker = Worker(settings)
        try:
            worker.start()
            worker.reset()
            started = time.monotonic()
            results = worker.process(worker.pending())
            log.info(
                "rebuild_finished",
                files=sum(len(result.files) for result in results),
                rows=sum(result.rows for result in results),
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        finally:
            worker.close()
    finally:
        lock.release()
    return 0
