"""The worker in this process on a real warehouse: partitions, retries and blame, reconciliation."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import structlog

from tests.conftest import REPO, wait_until, write_snapshot
from tests.transformer.conftest import ledger_rows, rewrite, snapshot_report, stamp, status
from transformer.ledger import file_facts
from transformer.service import LandingHandler, WatchService
from transformer.worker import Worker, WorkerOptions
from twitch_bi.settings import Layout, Settings

pytestmark = pytest.mark.slow

DAY1 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


def _files(reporting: Path) -> dict[str, tuple[int, int]]:
    return {
        path.relative_to(reporting).as_posix(): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in reporting.rglob("*")
        if path.is_file()
    }


def test_a_batch_rewrites_only_its_partitions_and_leaves_no_stale_file(
    in_process: Settings, data_dir: Path
) -> None:
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    layout = Layout(data_dir)
    for moment in (DAY1, DAY1 + timedelta(minutes=30), DAY2, DAY2 + timedelta(minutes=15)):
        write_snapshot(data_dir, moment, size=50)
    worker = Worker(in_process)
    worker.start()
    worker.process(worker.pending())
    before = _files(layout.reporting)

    # A late snapshot of day 1: its own file, the one after it (reweighted) and day 1.
    late = write_snapshot(data_dir, DAY1 + timedelta(minutes=15), size=50)
    worker.process(worker.pending())
    after = _files(layout.reporting)
    # New content under that name holds another time: the old snapshot's file goes.
    moved = DAY1 + timedelta(minutes=20)
    rewrite(
        late,
        lambda table: table.set_column(
            table.schema.get_field_index("snapshot_at"),
            "snapshot_at",
            pa.array([moved] * len(table), pa.timestamp("us", tz="UTC")),
        ),
    )
    worker.process(worker.pending())
    # A crash in the middle of an export leaves a partial file; the next start removes it.
    partial = layout.reporting / "fct_streams" / f"date={DAY2.date()}" / ".fct_streams.parquet.tmp"
    partial.write_bytes(b"half a file")
    worker.recover()
    # A crash between marking a file quarantined and moving it: the move is finished.
    unmoved = write_snapshot(data_dir, DAY2 + timedelta(hours=1), size=10)
    facts = file_facts(unmoved)
    worker.ledger.upsert(
        unmoved.name, status="quarantined", error="bad", content_hash=facts.content_hash
    )
    assert worker.pending() == []
    worker.close()

    changed = {name for name, identity in after.items() if before.get(name) != identity}
    # Day 1's files (per snapshot, per day, per hour of last sighting) and the one-file
    # dimensions, whose first and last sightings a late snapshot may move.
    dimensions = {f"{name}/{name}.parquet" for name in ("dim_channels", "dim_channel_names")}
    hour = DAY1.strftime("%Y%m%dT%H")
    assert changed - dimensions - {"dim_games/dim_games.parquet"} == {
        f"fct_stream_snapshots/date={DAY1.date()}/fct_stream_snapshots_{stamp(late_at)}.parquet"
        for late_at in (DAY1 + timedelta(minutes=15), DAY1 + timedelta(minutes=30))
    } | {
        f"fct_streams/date={DAY1.date()}/fct_streams_{hour}Z.parquet",
        f"fct_broadcasts/date={DAY1.date()}/fct_broadcasts_{hour}Z.parquet",
        f"agg_games_daily/date={DAY1.date()}/agg_games_daily.parquet",
        f"agg_snapshots/date={DAY1.date()}/agg_snapshots.parquet",
    }
    assert set(after) - set(before) == {
        f"fct_stream_snapshots/date={DAY1.date()}/"
        f"fct_stream_snapshots_{stamp(DAY1 + timedelta(minutes=15))}.parquet"
    }
    assert not snapshot_report(data_dir, DAY1 + timedelta(minutes=15)).exists()
    assert snapshot_report(data_dir, moved).exists()
    assert not partial.exists()
    assert (layout.quarantine / unmoved.name).exists()
    assert not unmoved.exists()
    # dbt-duckdb's own connection is closed after every run, not kept for the next.
    assert DuckDBConnectionManager._ENV is None


def _broken_project(folder: Path) -> Path:
    """The dbt project with a model that errors on rows titled 'explode' (a runtime error)."""
    project = folder / "dbt"
    shutil.copytree(REPO / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    staging = project / "models" / "staging" / "stg_twitch__streams.sql"
    original = "nullif(trim(game_name), '') as game_name"
    text = staging.read_text(encoding="utf-8")
    assert original in text
    staging.write_text(
        text.replace(
            original,
            "case when title = 'explode' then error('model exploded') "
            "else nullif(trim(game_name), '') end as game_name",
        ),
        encoding="utf-8",
    )
    return project


def _explosive(data_dir: Path, moment: datetime) -> Path:
    path = write_snapshot(data_dir, moment, size=30)
    return rewrite(
        path,
        lambda table: table.set_column(
            table.schema.get_field_index("title"),
            "title",
            pc.if_else(pa.array([True] + [False] * (len(table) - 1)), "explode", table["title"]),
        ),
    )


def _process_when_due(worker: Worker, names: set[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        due = worker.pending()
        if {path.name for path in due} >= names:
            worker.process(due)
            return
        time.sleep(0.05)
    raise AssertionError(f"{names} never became due")


def test_a_model_error_is_retried_with_backoff_and_blamed_only_when_other_files_land(
    in_process: Settings, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(data_dir)
    monkeypatch.setenv("DBT_PROJECT_DIR", str(_broken_project(tmp_path)))
    options = WorkerOptions(retry_base_seconds=0.2, max_attempts=3)
    bad = _explosive(data_dir, DAY1)
    good = write_snapshot(data_dir, DAY1 + timedelta(minutes=15), size=30)
    worker = Worker(in_process, options)
    worker.start()

    with structlog.testing.capture_logs() as logs:
        [together] = worker.process(worker.pending())
        _process_when_due(worker, {bad.name, good.name})  # each alone now: good lands
        _process_when_due(worker, {bad.name})  # bad fails alone a third time: blamed
        # Files that fail while nothing lands are never blamed, however often they fail.
        stuck = [_explosive(data_dir, DAY2)]
        worker.process(worker.pending())
        for _ in range(4):
            _process_when_due(worker, {path.name for path in stuck})
    worker.close()
    stuck_ledger = ledger_rows(data_dir)
    # The models are fixed (the real project): the stuck files land when due.
    monkeypatch.delenv("DBT_PROJECT_DIR")
    worker = Worker(in_process, options)
    worker.start()
    _process_when_due(worker, {path.name for path in stuck})
    worker.close()

    assert sorted(together.failed) == sorted([bad.name, good.name])
    assert together.quarantined == []
    assert not [line for line in logs if line["event"] == "batch_split"]
    delays = [line["delay_s"] for line in logs if line["event"] == "file_retry_scheduled"]
    assert delays[:3] == [0.2, 0.2, 0.4]  # both files, then the bad one alone
    assert (layout.quarantine / bad.name).exists()
    assert "model exploded" in (layout.quarantine / f"{bad.name}.error.json").read_text()
    assert snapshot_report(data_dir, DAY1 + timedelta(minutes=15)).exists()
    assert not snapshot_report(data_dir, DAY1).exists()
    for path in stuck:
        assert stuck_ledger[path.name]["status"] == "failed"
        assert stuck_ledger[path.name]["attempts"] == 5
        assert snapshot_report(
            data_dir, datetime.strptime(path.name[8:24], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        ).exists()
    assert {row["status"] for row in ledger_rows(data_dir).values()} == {"done", "quarantined"}


def test_a_file_no_event_announced_is_found_by_reconciliation(
    in_process: Settings, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # inotify dropped every event (a queue overflow, a mount it cannot see through).
    monkeypatch.setattr(LandingHandler, "on_any_event", lambda self, event: None)
    service = WatchService(in_process, WorkerOptions(reconcile_seconds=1.0))
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        wait_until(lambda: "processed" in status(data_dir), timeout=30)
        write_snapshot(data_dir, DAY1, size=20)
        wait_until(lambda: snapshot_report(data_dir, DAY1).exists(), timeout=30)
    finally:
        service.stopping.set()
        thread.join(timeout=30)
    assert status(data_dir)["processed"] == 1


def test_the_write_ahead_log_is_folded_in_when_idle_not_inside_a_batch(
    in_process: Settings, data_dir: Path
) -> None:
    layout = Layout(data_dir)
    wal = Path(f"{layout.warehouse_db}.wal")
    worker = Worker(in_process)
    worker.start()
    worker.checkpoint()
    for minutes in (0, 15, 30):
        write_snapshot(data_dir, DAY1 + timedelta(minutes=minutes), size=200)
        worker.process(worker.pending())
    # Three batches in, the log still holds them: no batch paid for a checkpoint, and
    # a live feed's batches (tens of MB of log each) do not either.
    assert wal.exists() and wal.stat().st_size > 0
    [(threshold,)] = worker.con.execute("select current_setting('checkpoint_threshold')").fetchall()
    assert threshold == "244.1 MiB"  # 256 MB, as DuckDB prints it
    reporting = _files(layout.reporting)

    worker.checkpoint()
    assert not wal.exists() or wal.stat().st_size == 0
    worker.close()
    # Nothing was lost in the fold: a new worker reads the same three snapshots.
    again = Worker(in_process)
    assert [
        row[0] for row in again.con.execute("select count(*) from main.agg_snapshots").fetchall()
    ] == [3]
    assert _files(layout.reporting) == reporting
    again.close()


def test_a_backlog_larger_than_a_batch_is_split_into_batches_in_time_order(
    in_process: Settings, data_dir: Path
) -> None:
    moments = [DAY1 + timedelta(minutes=15 * i) for i in range(5)]
    for moment in reversed(moments):
        write_snapshot(data_dir, moment, size=30)
    worker = Worker(in_process, WorkerOptions(max_batch_files=2))
    worker.start()

    results = worker.process(worker.pending())
    worker.close()

    assert [sorted(result.files) for result in results] == [
        [f"streams_{stamp(moment)}.parquet" for moment in moments[i : i + 2]]
        for i in range(0, 5, 2)
    ]
    assert {row["status"] for row in ledger_rows(data_dir).values()} == {"done"}
    for moment in moments:
        report = pq.read_table(snapshot_report(data_dir, moment))
        assert report.num_rows == 30
