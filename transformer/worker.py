"""The one worker: pending landed files become warehouse rows and reporting files, in batches."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import structlog

from transformer import exports
from transformer.dbt_runner import DbtOutcome, DbtProject
from transformer.ledger import (
    DONE,
    FAILED,
    PROCESSING,
    QUARANTINED,
    Entry,
    FileFacts,
    Ledger,
    file_facts,
)
from transformer.quarantine import quarantine
from transformer.snapshots import InvalidSnapshot, Snapshot, has_parquet_footer, inspect
from twitch_bi import healthchecks
from twitch_bi.contract import is_candidate_name, snapshot_time_from_name
from twitch_bi.settings import Settings

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 3


@dataclass
class WorkerOptions:
    """Knobs with defaults that suit a VPS; tests and benchmarks turn them."""

    max_batch_files: int = 48
    # A file without a whole Parquet footer is waited for until its size has not
    # changed for this long; then it is read (and quarantined if it is not Parquet).
    settle_seconds: float = 5.0


@dataclass
class _Waiting:
    size: int
    since: float


@dataclass
class BatchResult:
    """What a batch did, for the log line and the status file."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    quarantined: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    partitions_written: int = 0


class Worker:
    """Owns the warehouse connection, the ledger and the dbt project of one process."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or WorkerOptions()
        self.layout = settings.layout.ensure()
        self.dbt = DbtProject(self.layout.root)
        self._waiting: dict[str, _Waiting] = {}
        self.last_error: str | None = None
        self._open()

    # -- connection ---------------------------------------------------------------------

    def _open(self) -> None:
        # dbt-duckdb connects to the same file with the same (empty) config, so both
        # share this one DuckDB instance inside the process: no lock between them.
        self.con = duckdb.connect(str(self.layout.warehouse_db))
        self.con.execute(f"set memory_limit = '{self.settings.duckdb_memory_limit}'")
        self.con.execute("set TimeZone = 'UTC'")
        self.ledger = Ledger(self.con)

    def close(self) -> None:
        self.con.close()

    def start(self) -> None:
        """Parse dbt and finish any batch a crash left half done."""
        self.dbt.parse()
        self.specs = self.dbt.exports()
        self.recover()

    # -- what is pending ------------------------------------------------------------------

    def pending(self, names: set[str] | None = None) -> list[Path]:
        """Landed files that need processing and are complete, oldest snapshot first."""
        folder = self.layout.landing_streams
        if names is None:
            candidates = [path for path in folder.iterdir() if is_candidate_name(path.name)]
        else:
            candidates = [folder / name for name in names if is_candidate_name(name)]
        entries = self.ledger.entries()
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
            if not self._needs_processing(path, stat.st_size, stat.st_mtime_ns, entry):
                continue
            if self._is_complete(path, stat.st_size):
                ready.append(path)
        return sorted(ready, key=_snapshot_order)

    def _needs_processing(self, path: Path, size: int, mtime_ns: int, entry: Entry | None) -> bool:
        if entry is None or entry.force or entry.status == QUARANTINED:
            return True
        if entry.status == PROCESSING:
            return False  # an interrupted batch: recover() owns it
        if entry.status == FAILED:
            return entry.attempts < MAX_ATTEMPTS
        if entry.size_bytes == size and entry.mtime_ns == mtime_ns:
            return False
        facts = file_facts(path)
        if facts.content_hash == entry.content_hash:
            self.ledger.upsert(path.name, mtime_ns=mtime_ns, size_bytes=size)
            log.info("file_unchanged_skipped", file=path.name)
            return False
        return True

    def _is_complete(self, path: Path, size: int) -> bool:
        if has_parquet_footer(path):
            self._waiting.pop(path.name, None)
            return True
        now = time.monotonic()
        waiting = self._waiting.get(path.name)
        if waiting is None or waiting.size != size:
            self._waiting[path.name] = _Waiting(size, now)
            log.debug("file_incomplete_waiting", file=path.name, size_bytes=size)
            return False
        if now - waiting.since >= self.options.settle_seconds:
            del self._waiting[path.name]
            return True  # it stopped growing without a footer: let validation say why
        return False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # -- processing -------------------------------------------------------------------------

    def plan(self, paths: list[Path]) -> list[list[Path]]:
        """Batches of at most `max_batch_files`; a file that failed before goes alone."""
        entries = self.ledger.entries()
        retries = [
            path
            for path in paths
            if (entry := entries.get(path.name)) is not None and entry.status == FAILED
        ]
        fresh = [path for path in paths if path not in retries]
        size = self.options.max_batch_files
        return [fresh[i : i + size] for i in range(0, len(fresh), size)] + [[p] for p in retries]

    def process(self, paths: list[Path]) -> list[BatchResult]:
        """Process files batch after batch."""
        return [self.process_batch(batch) for batch in self.plan(paths)]

    def process_batch(self, paths: list[Path]) -> BatchResult:
        """Validate, load, run dbt, export, then mark the files done."""
        started = time.monotonic()
        batch_id = uuid.uuid4().hex[:12]
        result = BatchResult()
        structlog.contextvars.bind_contextvars(batch_id=batch_id)
        try:
            snapshots = self._validate(paths, result)
            if snapshots:
                self._stage(snapshots, batch_id)
                self._finish(result, started)
        finally:
            structlog.contextvars.unbind_contextvars("batch_id")
        return result

    def _validate(self, paths: list[Path], result: BatchResult) -> list[tuple[Snapshot, FileFacts]]:
        valid: list[tuple[Snapshot, FileFacts]] = []
        taken: dict[datetime, str] = {}
        for path in paths:
            try:
                facts = file_facts(path)
                snapshot = inspect(self.con, path)
                owner = taken.get(snapshot.snapshot_at) or self.ledger.snapshot_owner(
                    snapshot.snapshot_at, path.name
                )
                if owner is not None:
                    raise InvalidSnapshot(
                        f"snapshot {snapshot.snapshot_at.isoformat()} is already held by "
                        f"{owner}; drop a file with that name to replace it",
                        "DuplicateSnapshot",
                    )
            except FileNotFoundError:
                log.warning("file_vanished", file=path.name)
                continue
            except InvalidSnapshot as error:
                self._quarantine(path, error.reason, error.error_class)
                result.quarantined.append(path.name)
                continue
            taken[snapshot.snapshot_at] = path.name
            valid.append((snapshot, facts))
        return valid

    def _stage(self, snapshots: list[tuple[Snapshot, FileFacts]], batch_id: str) -> None:
        """Load the batch's rows and mark its files `processing`, in one transaction."""
        con = self.con
        con.begin()
        try:
            con.execute("delete from landing.batch_streams")
            for snapshot, facts in snapshots:
                con.execute(f"insert into landing.batch_streams {snapshot.select_sql}")
                previous = self.ledger.get(facts.name)
                if (
                    previous is not None
                    and previous.snapshot_at is not None
                    and previous.status in (DONE, PROCESSING, FAILED)
                    and previous.snapshot_at != snapshot.snapshot_at
                ):
                    con.execute(
                        "insert into ops.pending_removals values (?, ?)",
                        [previous.snapshot_at, f"{facts.name} now holds another time"],
                    )
                self.ledger.upsert(
                    facts.name,
                    status=PROCESSING,
                    size_bytes=facts.size,
                    mtime_ns=facts.mtime_ns,
                    content_hash=facts.content_hash,
                    snapshot_at=snapshot.snapshot_at,
                    row_count=snapshot.rows,
                    attempts=(previous.attempts if previous and previous.status == FAILED else 0)
                    + 1,
                    force=False,
                    error=None,
                    error_class=None,
                    batch_id=batch_id,
                )
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def recover(self) -> None:
        """Finish a batch that a crash interrupted after it was staged."""
        names = self.ledger.processing()
        if not names:
            return
        log.warning("batch_resumed", files=len(names))
        self._finish(BatchResult(), time.monotonic())

    def _finish(self, result: BatchResult, started: float) -> None:
        names = self.ledger.processing()
        rows = self.con.execute("select count(*) from landing.batch_streams").fetchone()
        result.files = names
        result.rows = int(rows[0]) if rows else 0

        outcome = self.dbt.build_batch()
        if not outcome.success:
            self._fail(names, outcome, result)
            return

        written = exports.export_changes(self.con, self.specs, self.layout.reporting)
        result.partitions_written = len(written)
        duration_ms = int((time.monotonic() - started) * 1000)

        con = self.con
        con.begin()
        try:
            con.execute(
                """
                update ops.ledger
                set status = 'done', processed_at = ?, duration_ms = ?, error = null,
                    error_class = null
                where status = 'processing'
                """,
                [datetime.now(UTC), duration_ms],
            )
            con.execute("delete from landing.batch_streams")
            con.execute("delete from ops.pending_removals")
            con.commit()
        except BaseException:
            con.rollback()
            raise
        self.last_error = None
        log.info(
            "batch_processed",
            files=len(names),
            rows=result.rows,
            partitions=len(written),
            dbt_ms=outcome.duration_ms,
            duration_ms=duration_ms,
            first_file=names[0] if names else None,
            last_file=names[-1] if names else None,
        )
        healthchecks.ping(
            self.settings.transformer_healthcheck_url,
            "",
            f"files={len(names)} rows={result.rows} duration_ms={duration_ms}",
        )

    def _fail(self, names: list[str], outcome: DbtOutcome, result: BatchResult) -> None:
        message = "; ".join(outcome.messages)[:4000] or "dbt failed"
        self.last_error = message
        log.error(
            "batch_failed",
            files=len(names),
            failed_tests=outcome.failed_tests,
            failed_models=outcome.failed_models,
            error=message,
        )
        healthchecks.ping(self.settings.transformer_healthcheck_url, "fail", message)
        for name in names:
            entry = self.ledger.get(name)
            attempts = entry.attempts if entry else 1
            single = len(names) == 1
            if (single and outcome.data_problem) or attempts >= MAX_ATTEMPTS:
                reason = (
                    f"dbt data test(s) failed: {', '.join(outcome.failed_tests)}"
                    if outcome.data_problem
                    else f"dbt failed {attempts} times: {message}"
                )
                self._quarantine(
                    self.layout.landing_streams / name,
                    reason,
                    "DataTestFailed" if outcome.data_problem else "DbtFailed",
                    loaded=entry.snapshot_at if entry else None,
                )
                result.quarantined.append(name)
            else:
                self.ledger.upsert(name, status=FAILED, error=message, error_class="DbtFailed")
                result.failed.append(name)

    def _quarantine(
        self, path: Path, reason: str, error_class: str, loaded: datetime | None = None
    ) -> None:
        quarantine(path, self.layout.quarantine, reason, error_class)
        self.ledger.upsert(
            path.name, status=QUARANTINED, error=reason, error_class=error_class, force=False
        )
        if loaded is not None:
            # Its rows may have reached the warehouse before dbt failed: take them out.
            self.con.execute(
                "insert into ops.pending_removals values (?, ?)", [loaded, "quarantined"]
            )
        self.last_error = f"{path.name}: {reason}"

    # -- operations -------------------------------------------------------------------------

    def force(self, names: list[str]) -> int:
        return self.ledger.request_reprocess(names)

    def force_since(self, since: datetime) -> list[str]:
        rows = self.con.execute(
            "select file_name from ops.ledger where snapshot_at >= ? and status = 'done'",
            [since],
        ).fetchall()
        names = [row[0] for row in rows]
        self.ledger.request_reprocess(names)
        return names

    def reset(self) -> None:
        """Delete the warehouse and reporting/ (for a rebuild); the ledger goes with them."""
        self.close()
        for suffix in ("", ".wal"):
            Path(f"{self.layout.warehouse_db}{suffix}").unlink(missing_ok=True)
        if self.layout.reporting.exists():
            shutil.rmtree(self.layout.reporting)
        self.layout.ensure()
        self._open()
        log.info("warehouse_reset")


def _snapshot_order(path: Path) -> tuple[str, str]:
    moment = snapshot_time_from_name(path.name)
    return (moment.isoformat() if moment else "", path.name)
