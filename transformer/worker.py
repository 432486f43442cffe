"""The one worker: pending landed files become warehouse rows and reporting files, in batches."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import structlog

from transformer import exports
from transformer.arrivals import Arrivals
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
from transformer.snapshots import InvalidSnapshot, Snapshot, inspect
from twitch_bi import healthchecks
from twitch_bi.settings import Settings, numbers_from_env

log = structlog.get_logger(__name__)

# How much write-ahead log the warehouse may gather between checkpoints (see _open):
# a backfill checkpoints every few batches, a live feed when it is idle.
CHECKPOINT_THRESHOLD = "256MB"

# The environment variables that tune the worker, and the WorkerOptions field each sets.
ENVIRONMENT = {
    "TRANSFORMER_BATCH_FILES": "max_batch_files",
    "TRANSFORMER_SETTLE_SECONDS": "settle_seconds",
    "TRANSFORMER_STALL_SECONDS": "stall_seconds",
    "TRANSFORMER_RETRY_SECONDS": "retry_base_seconds",
    "TRANSFORMER_RECONCILE_SECONDS": "reconcile_seconds",
}


@dataclass
class WorkerOptions:
    """Knobs with defaults that suit a VPS; tests and benchmarks turn them."""

    max_batch_files: int = 48
    # A file without a whole Parquet footer is waited for. After a close event it is read
    # (and quarantined if it is not Parquet) once its size has been still this long ...
    settle_seconds: float = 2.0
    # ... and without one (polling observer, a file found by a scan) after this long: a
    # slow copy over a network share must not be mistaken for a truncated file.
    stall_seconds: float = 300.0
    # A batch that failed for a reason not blamed on its data is retried after a delay
    # that doubles with every attempt, from the base up to the cap.
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    # A file that failed alone this often, while other files landed in between, is
    # blamed for it and quarantined; until then it is only retried.
    max_attempts: int = 3
    reconcile_seconds: float = 60.0

    @classmethod
    def from_env(cls) -> WorkerOptions:
        """Defaults, overridden by TRANSFORMER_* variables (for tuning and tests)."""
        return replace(cls(), **numbers_from_env(ENVIRONMENT, cls()))


@dataclass
class BatchResult:
    """What a batch did, for the log line, the status file and the healthcheck ping."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    quarantined: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    partitions_written: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: BatchResult) -> None:
        self.files += other.files
        self.rows += other.rows
        self.quarantined += other.quarantined
        self.failed += other.failed
        self.partitions_written += other.partitions_written
        self.errors += other.errors


class Worker:
    """Owns the warehouse connection, the ledger and the dbt project of one process."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or WorkerOptions()
        self.layout = settings.layout.ensure()
        self.dbt = DbtProject(self.layout.root)
        # The most recent error, kept (with its time) until a newer one: `status` shows it.
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        # The service sets this on SIGTERM: a split batch then stops between its halves.
        self.stop_requested: Callable[[], bool] = lambda: False
        self._open()

    # -- connection ---------------------------------------------------------------------

    def _open(self) -> None:
        # dbt-duckdb connects to the same file with the same (empty) config, so both
        # share this one DuckDB instance inside the process: no lock between them.
        self.con = duckdb.connect(str(self.layout.warehouse_db))
        self.con.execute(f"set memory_limit = '{self.settings.duckdb_memory_limit}'")
        self.con.execute("set TimeZone = 'UTC'")
        # DuckDB folds its write-ahead log into the database file (a checkpoint) once
        # the log passes a threshold, inside whichever statement crosses it: with the
        # default 16 MB that is a second or so inside nearly every batch. Let the log
        # grow instead and checkpoint when the queue is idle (checkpoint()); a crash
        # loses nothing, DuckDB replays the log at the next start.
        self.con.execute(f"set checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        self._unsaved = False
        self.ledger = Ledger(self.con)
        self.arrivals = Arrivals(
            self.layout.landing_streams,
            self.ledger,
            self.options.settle_seconds,
            self.options.stall_seconds,
            self._finish_quarantine,
        )

    def close(self) -> None:
        self.con.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file, if batches ran since the last."""
        if not self._unsaved:
            return
        started = time.monotonic()
        self.con.execute("checkpoint")
        self._unsaved = False
        log.debug("warehouse_checkpointed", duration_ms=_ms(started, time.monotonic()))

    def start(self) -> None:
        """Parse dbt and finish any batch a crash left half done."""
        self.dbt.parse()
        self.specs = self.dbt.exports()
        self.recover()

    # -- what is pending ------------------------------------------------------------------

    def pending(
        self, names: Iterable[str] | None = None, closed: Iterable[str] = (), scan: bool = False
    ) -> list[Path]:
        """Landed files that need processing and are complete, oldest snapshot first.

        Without `names` (or with `scan`) every file in landing/streams/ is looked at (the
        reconciliation scan); else the files events hinted at and the ones still awaited.
        `closed` names files a writer was seen closing.
        """
        return self.arrivals.pending(names, closed, scan)

    @property
    def waiting(self) -> int:
        """Files seen but not complete yet (being copied)."""
        return self.arrivals.waiting

    # -- processing -------------------------------------------------------------------------

    def plan(self, paths: list[Path]) -> list[list[Path]]:
        """Batches of at most `max_batch_files`; a file that failed before goes alone."""
        entries = self.ledger.entries([path.name for path in paths])
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
        """Validate, load, run dbt, export, then mark the files done; ping the healthcheck."""
        try:
            result = self._batch(paths)
        except Exception as error:
            # The batch stays staged and is resumed; the check still hears it failed.
            healthchecks.ping(
                self.settings.transformer_healthcheck_url,
                "fail",
                f"batch of {len(paths)} files crashed: {type(error).__name__}",
            )
            raise
        self._unsaved = True
        problems = result.quarantined + result.failed
        if problems:
            healthchecks.ping(
                self.settings.transformer_healthcheck_url,
                "fail",
                "\n".join(
                    [f"files landed={len(result.files)} not landed={problems}", *result.errors]
                ),
            )
        elif result.files:
            healthchecks.ping(
                self.settings.transformer_healthcheck_url,
                "",
                f"files={len(result.files)} rows={result.rows}",
            )
        return result

    def _batch(self, paths: list[Path]) -> BatchResult:
        started = time.monotonic()
        result = BatchResult()
        batch_id = uuid.uuid4().hex[:12]
        structlog.contextvars.bind_contextvars(batch_id=batch_id)
        try:
            log.debug("batch_started", files=len(paths))
            snapshots = self._validate(paths, result)
            timings = {"validate_ms": _ms(started, time.monotonic())}
            if snapshots:
                staging = time.monotonic()
                try:
                    self._stage(snapshots, batch_id)
                except duckdb.Error as error:
                    outcome = DbtOutcome(success=False, duration_ms=0)
                    outcome.messages.append(f"loading the batch failed: {error}")
                    self._failed([s.path.name for s, _ in snapshots], outcome, result)
                    return result
                timings["stage_ms"] = _ms(staging, time.monotonic())
                self._run(result, started, timings)
            elif self.ledger.pending_removals():
                self._run(result, started, timings)
        finally:
            structlog.contextvars.unbind_contextvars("batch_id")
        return result

    def _validate(self, paths: list[Path], result: BatchResult) -> list[tuple[Snapshot, FileFacts]]:
        valid: list[tuple[Snapshot, FileFacts]] = []
        taken: dict[datetime, str] = {}
        for path in paths:
            facts = None
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
                self._quarantine_invalid(path, error.reason, error.error_class, facts)
                result.quarantined.append(path.name)
                result.errors.append(f"{path.name}: {error.reason}")
                continue
            taken[snapshot.snapshot_at] = path.name
            valid.append((snapshot, facts))
        return valid

    def _stage(self, snapshots: list[tuple[Snapshot, FileFacts]], batch_id: str) -> None:
        """Load the batch's rows and mark its files `processing`, in one transaction.

        From here on the batch is a redo log: every later step (dbt, exports) is
        idempotent and is replayed by recover() if the process dies before `done`.
        """
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
                retried = previous is not None and previous.status == FAILED
                self.ledger.upsert(
                    facts.name,
                    status=PROCESSING,
                    size_bytes=facts.size,
                    mtime_ns=facts.mtime_ns,
                    content_hash=facts.content_hash,
                    snapshot_at=snapshot.snapshot_at,
                    row_count=snapshot.rows,
                    attempts=(previous.attempts if previous and retried else 0) + 1,
                    failed_since=previous.failed_since if previous and retried else None,
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
        """Finish what a crash interrupted: a staged batch, or removals not yet applied."""
        exports.remove_partials(self.layout.reporting)
        names = self.ledger.processing()
        if names:
            log.warning("batch_resumed", files=len(names))
        elif not self.ledger.pending_removals():
            return
        self._run(BatchResult(), time.monotonic(), repair=not names)

    def _run(
        self,
        result: BatchResult,
        started: float,
        timings: dict[str, int] | None = None,
        repair: bool = False,
    ) -> None:
        """dbt over the staged batch, the exports it calls for, then `done` for its files."""
        timings = dict(timings or {})
        names = self.ledger.processing()
        rows = self.con.execute("select count(*) from landing.batch_streams").fetchone()
        batch_rows = int(rows[0]) if rows else 0

        outcome = self.dbt.build_batch()
        timings["dbt_ms"] = outcome.duration_ms
        written: list[exports.Written] = []
        if outcome.success:
            exporting = time.monotonic()
            try:
                written = exports.export_changes(self.con, self.specs, self.layout.reporting)
            except (OSError, duckdb.Error) as error:
                outcome.success = False
                outcome.messages.append(f"export failed: {type(error).__name__}: {error}")
            timings["export_ms"] = _ms(exporting, time.monotonic())
        if not outcome.success:
            if repair:
                log.error("repair_failed", error="; ".join(outcome.messages)[:2000])
            else:
                self._failed(names, outcome, result)
            return

        committing = time.monotonic()
        duration_ms = _ms(started, committing)
        con = self.con
        con.begin()
        try:
            con.execute(
                """
                update ops.ledger
                set status = 'done', processed_at = ?, duration_ms = ?, error = null,
                    error_class = null, failed_since = null, next_attempt_at = null
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
        result.files += names
        result.rows += batch_rows
        result.partitions_written += len(written)
        log.info(
            "batch_processed" if names else "removals_applied",
            files=len(names),
            rows=batch_rows,
            partitions=len(written),
            **timings,
            commit_ms=_ms(committing, time.monotonic()),
            duration_ms=_ms(started, time.monotonic()),
            first_file=names[0] if names else None,
            last_file=names[-1] if names else None,
        )

    def _failed(self, names: list[str], outcome: DbtOutcome, result: BatchResult) -> None:
        """Decide, file by file, between splitting the batch, retrying later and quarantine.

        A failing data test (or running out of memory) is the data's fault: the batch is
        split until the file(s) to blame are alone, and those are quarantined while the
        rest lands. Anything else (a model error, a full disk, a locked file) is presumed
        not to be: the files are retried with a growing delay, and a file is quarantined
        only after it failed alone `max_attempts` times while other files landed.
        """
        message = "; ".join(outcome.messages)[:4000] or "dbt failed"
        self.note_error(message)
        blamed_on_data = outcome.data_problem or outcome.out_of_memory
        log.error(
            "batch_failed",
            files=len(names),
            failed_tests=outcome.failed_tests,
            failed_models=outcome.failed_models,
            blamed_on_data=blamed_on_data,
            error=message,
        )
        result.errors.append(message)
        entries = self.ledger.entries(names)
        now = datetime.now(UTC)

        if blamed_on_data and len(names) > 1:
            self._unstage(
                names,
                entries,
                {name: (FAILED, message, now) for name in names},
                split=True,
                changed_marts=outcome.changed_marts,
            )
            half = len(names) // 2
            log.warning("batch_split", files=len(names), first=half, second=len(names) - half)
            for part in (names[:half], names[half:]):
                if self.stop_requested():
                    return
                result.merge(self._batch([self.layout.landing_streams / name for name in part]))
            return

        decisions: dict[str, tuple[str, str, datetime | None]] = {}
        reasons: dict[str, tuple[str, str]] = {}
        for name in names:
            entry = entries.get(name)
            attempts = entry.attempts if entry else 1
            failed_since = (entry.failed_since if entry else None) or now
            if blamed_on_data:
                if outcome.out_of_memory:
                    detail = next(m for m in outcome.messages if "Out of Memory" in m)
                    reasons[name] = (
                        "too large for DUCKDB_MEMORY_LIMIT="
                        f"{self.settings.duckdb_memory_limit}: {detail.strip().splitlines()[0]}",
                        "TooLarge",
                    )
                else:
                    reasons[name] = (
                        f"dbt data test(s) failed: {', '.join(outcome.failed_tests)}",
                        "DataTestFailed",
                    )
            elif (
                len(names) == 1
                and attempts >= self.options.max_attempts
                and self.ledger.succeeded_since(failed_since)
            ):
                reasons[name] = (
                    f"dbt failed on this file alone {attempts} times while other files "
                    f"landed: {message}",
                    "DbtFailed",
                )
            if name in reasons:
                decisions[name] = (QUARANTINED, reasons[name][0], None)
                result.quarantined.append(name)
            else:
                delay = min(
                    self.options.retry_base_seconds * 2 ** max(attempts - 1, 0),
                    self.options.retry_max_seconds,
                )
                decisions[name] = (FAILED, message, now + timedelta(seconds=delay))
                result.failed.append(name)
                log.warning("file_retry_scheduled", file=name, attempts=attempts, delay_s=delay)
        self._unstage(
            names, entries, decisions, error_classes=reasons, changed_marts=outcome.changed_marts
        )
        for name, (reason, error_class) in reasons.items():
            self._finish_quarantine(self.layout.landing_streams / name, reason, error_class)
        if self.ledger.pending_removals():
            # Take the failed snapshots' rows back out of the marts and reporting now,
            # so the warehouse stays what the `done` files make it.
            self._run(BatchResult(), time.monotonic(), repair=True)

    def _unstage(
        self,
        names: list[str],
        entries: dict[str, Entry],
        decisions: dict[str, tuple[str, str, datetime | None]],
        error_classes: dict[str, tuple[str, str]] | None = None,
        split: bool = False,
        changed_marts: bool = True,
    ) -> None:
        """Take failed files out of the batch: new status, their snapshots to be removed.

        A snapshot's rows must go if the failed run wrote them to the marts, or if an
        earlier version of the file put them there; else there is nothing to take out.
        A split is no attempt of its own: the halves count theirs.
        """
        now = datetime.now(UTC)
        con = self.con
        con.begin()
        try:
            for name in names:
                status, error, next_attempt_at = decisions[name]
                entry = entries.get(name)
                error_class = (error_classes or {}).get(name, ("", "DbtFailed"))[1]
                self.ledger.upsert(
                    name,
                    status=status,
                    quarantined_at=None,
                    error=error[:4000],
                    error_class=error_class,
                    next_attempt_at=next_attempt_at,
                    failed_since=(entry.failed_since if entry else None) or now,
                )
                if split and entry is not None:
                    self.ledger.upsert(name, attempts=max(entry.attempts - 1, 0))
                if (
                    entry is not None
                    and entry.snapshot_at is not None
                    and (changed_marts or entry.processed_at is not None)
                ):
                    con.execute(
                        "insert into ops.pending_removals values (?, ?)",
                        [entry.snapshot_at, f"{name} {status}"],
                    )
            con.execute("delete from landing.batch_streams")
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _quarantine_invalid(
        self, path: Path, reason: str, error_class: str, facts: FileFacts | None
    ) -> None:
        """Quarantine a file that failed validation (its rows never reached the batch)."""
        entry = self.ledger.get(path.name)
        con = self.con
        con.begin()
        try:
            # Record what was quarantined, so that the same content dropped again is
            # recognised and a different one is not.
            identity = (
                {
                    "size_bytes": facts.size,
                    "mtime_ns": facts.mtime_ns,
                    "content_hash": facts.content_hash,
                }
                if facts
                else {}
            )
            self.ledger.upsert(
                path.name,
                status=QUARANTINED,
                error=reason,
                error_class=error_class,
                force=False,
                next_attempt_at=None,
                quarantined_at=None,
                **identity,
            )
            if entry is not None and entry.snapshot_at is not None and entry.status == DONE:
                # A bad file replaced a good one: the snapshot's rows go with the good one.
                con.execute(
                    "insert into ops.pending_removals values (?, ?)",
                    [entry.snapshot_at, f"{path.name} quarantined"],
                )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        self._finish_quarantine(path, reason, error_class)

    def _finish_quarantine(
        self, path: Path, reason: str | None = None, error_class: str | None = None
    ) -> None:
        """Move a file whose ledger row already says quarantined out of landing/."""
        if reason is None or error_class is None:
            row = self.con.execute(
                "select error, error_class from ops.ledger where file_name = ?", [path.name]
            ).fetchone()
            reason, error_class = (row[0], row[1]) if row else ("quarantined", "Unknown")
        moved = quarantine(
            path, self.layout.quarantine, reason or "quarantined", error_class or "Unknown"
        )
        if moved is not None:
            self.ledger.upsert(path.name, quarantined_at=datetime.now(UTC))
        self.note_error(f"{path.name}: {reason}")

    # -- operations -------------------------------------------------------------------------

    def note_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = datetime.now(UTC)

    def force(self, names: list[str]) -> int:
        return self.ledger.request_reprocess(names)

    def force_since(self, since: datetime) -> list[str]:
        rows = self.con.execute(
            """
            select file_name from ops.ledger
            where snapshot_at >= ? and status in ('done', 'failed')
            """,
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


def _ms(start: float, end: float) -> int:
    return int((end - start) * 1000)
