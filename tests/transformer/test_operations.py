"""Exactly-once, reprocess, rebuild and status: `twitch-bi` commands beside a running watch."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Process, service_env, wait_until, write_snapshot
from tests.transformer.conftest import (
    clean_run,
    ledger_rows,
    reporting_tables,
    run_cli,
    status,
)
from twitch_bi.settings import Layout
from twitch_bi.statefile import write_json

pytestmark = pytest.mark.slow

T0 = datetime(2026, 3, 2, 23, 15, tzinfo=UTC)


def _batches(watch: Process) -> int:
    return len(watch.events("batch_processed"))


def test_same_content_is_skipped_and_new_content_or_reprocess_equals_a_fresh_run(
    spawn: Callable[..., Process], data_dir: Path, tmp_path: Path
) -> None:
    layout = Layout(data_dir)
    first = write_snapshot(data_dir, T0, size=60)
    second = write_snapshot(data_dir, T0 + timedelta(minutes=15), size=60)
    watch = spawn(["watch"], service_env(data_dir))
    wait_until(lambda: _batches(watch) == 1, timeout=30)
    before = reporting_tables(data_dir)

    # The same bytes again under the same name (a new inode and modification time).
    shutil.copy(first, tmp_path / "copy")
    os.replace(tmp_path / "copy", first)
    [skipped] = watch.wait_for_event("file_unchanged_skipped", timeout=20)
    # New content under a known name replaces that snapshot's rows.
    newer = write_snapshot(data_dir, T0 + timedelta(minutes=15), size=60, seed=11, folder=tmp_path)
    os.replace(newer, second)
    wait_until(lambda: _batches(watch) == 2, timeout=30)
    replaced = reporting_tables(data_dir)
    # Reprocessing while watch runs changes nothing.
    by_name = run_cli(["reprocess", first.name], data_dir)
    wait_until(lambda: _batches(watch) == 3, timeout=30)
    since = run_cli(["reprocess", "--since", "2026-03-02"], data_dir)
    wait_until(lambda: _batches(watch) == 4, timeout=30)
    unknown = run_cli(["reprocess", "streams_20990101T000000Z.parquet"], data_dir)
    assert watch.stop() == 0

    assert skipped["file"] == first.name
    assert watch.events("batch_processed")[-1]["files"] == 2
    assert by_name.returncode == since.returncode == 0
    assert by_name.stdout == "queued 1 file(s) for reprocessing\n"
    # T0 is 2026-03-02: both files are named from that day on.
    assert "(2 landed file(s) are named from that day on;" in since.stdout
    [requested] = watch.events("reprocess_requested")[-1:]
    assert requested["files"] == 2
    assert unknown.returncode == 2
    assert "not in" in unknown.stderr
    assert replaced != before
    assert reporting_tables(data_dir) == replaced == clean_run([first, second], tmp_path)
    ledger = ledger_rows(data_dir)
    for path in (first, second):
        row = ledger[path.name]
        content = path.read_bytes()
        assert row["size_bytes"] == len(content)
        assert row["content_hash"] == hashlib.blake2b(content, digest_size=20).hexdigest()
        assert row["snapshot_at"] is not None
        assert row["row_count"] == 60
        assert row["status"] == "done"
        assert row["attempts"] == 1
        assert row["error"] is None
        assert row["processed_at"] is not None
        assert row["duration_ms"] >= 0
    assert not list(layout.quarantine.iterdir())


def test_any_arrival_order_and_rebuild_give_the_same_tables(
    spawn: Callable[..., Process], data_dir: Path, tmp_path: Path
) -> None:
    rng = random.Random(5)  # noqa: S311 - a repeatable order, not cryptography
    layout = Layout(data_dir)
    times = [T0 + timedelta(minutes=15 * index) for index in range(6)]
    staged = [write_snapshot(data_dir, moment, size=50, folder=tmp_path) for moment in times]
    rng.shuffle(staged)
    watch = spawn(["watch"], service_env(data_dir))
    watch.wait_for_event("transformer_started")

    for count, path in enumerate(staged, start=1):
        os.replace(path, layout.landing_streams / path.name)
        wait_until(lambda count=count: _batches(watch) == count, timeout=30)
    incremental = reporting_tables(data_dir)
    # `rebuild` while watch runs: the running transformer does it.
    asked = run_cli(["rebuild"], data_dir)
    watch.wait_for_event("warehouse_reset", timeout=30)
    wait_until(lambda: _batches(watch) == len(times) + 1, timeout=60)
    rebuilt_by_watch = reporting_tables(data_dir)
    assert watch.stop() == 0
    watch_pid = status(data_dir)["pid"]
    # `rebuild` with no transformer running does it itself, and says so in the status.
    alone = run_cli(["rebuild"], data_dir)
    after = status(data_dir)

    assert asked.returncode == alone.returncode == 0
    assert after["pid"] != watch_pid
    assert after["processed"] == len(times)
    assert after["pending"] == 0
    assert after["lag_seconds"] == 0
    assert rebuilt_by_watch == incremental
    assert reporting_tables(data_dir) == incremental
    assert len([name for name in incremental if name.startswith("fct_stream_snapshots")]) == 6


def test_status_reports_counts_lag_and_last_error_while_watch_holds_the_warehouse(
    spawn: Callable[..., Process], data_dir: Path
) -> None:
    layout = Layout(data_dir)
    write_snapshot(data_dir, T0, size=40)
    last = write_snapshot(data_dir, T0 + timedelta(minutes=15), size=40)
    bad = layout.landing_streams / "streams_20260303T000000Z.parquet"
    bad.write_text("id,viewer_count\n1,2\n", encoding="utf-8")
    # Landed long before this start: not a copy in progress, so it is judged at once.
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(bad, (an_hour_ago, an_hour_ago))
    # Nothing listens on the discard port: every healthcheck ping fails, no batch does.
    url = "http://127.0.0.1:9/ping/secret-check-uuid"
    watch = spawn(["watch"], service_env(data_dir, TRANSFORMER_HEALTHCHECK_URL=url))
    watch.wait_for_event("file_quarantined", timeout=30)
    wait_until(lambda: status(data_dir).get("processed") == 2, timeout=30)

    # A newer file still being copied: pending, and the lag is measured against it.
    with open(layout.landing_streams / "streams_20260303T001500Z.parquet", "wb") as copy:
        copy.write(b"PAR1" + bytes(1000))
        copy.flush()
        wait_until(lambda: status(data_dir).get("pending") == 1, timeout=10)
        as_json = run_cli(["status", "--json"], data_dir)
        as_text = run_cli(["status"], data_dir)
        check = run_cli(["status", "--check"], data_dir)
    assert watch.stop() == 0
    # Stopped a moment ago, its heartbeat still fresh: not running.
    stopped = json.loads(run_cli(["status", "--json"], data_dir).stdout)

    report = json.loads(as_json.stdout)
    assert report["running"] is True
    assert report["pid"] == watch.popen.pid
    assert report["processed"] == 2
    assert report["pending"] == 1
    assert report["quarantined"] == report["quarantined_files"] == 1
    # Both files went in one batch: the last file is the newer snapshot.
    assert report["last_file"] == last.name
    assert datetime.fromisoformat(report["last_processed_at"]).tzinfo is not None
    assert report["newest_landed"] == "streams_20260303T001500Z.parquet"
    assert report["lag_seconds"] == (datetime(2026, 3, 3, 0, 15, tzinfo=UTC) - T0).seconds - 900
    assert bad.name in report["last_error"]
    assert "processed:   2 files" in as_text.stdout
    assert bad.name in as_text.stdout
    assert check.returncode == 0
    assert stopped["running"] is False
    assert stopped["heartbeat_age_seconds"] < 30
    assert "NOT running" in run_cli(["status"], data_dir).stdout
    assert watch.events("batch_processed")
    assert watch.events("healthcheck_ping_failed")
    assert "secret-check-uuid" not in watch.log_path.read_text(encoding="utf-8")


def test_status_says_not_running_at_once_after_kill_9(
    spawn: Callable[..., Process], data_dir: Path
) -> None:
    write_snapshot(data_dir, T0, size=40)
    watch = spawn(["watch"], service_env(data_dir))
    wait_until(lambda: status(data_dir).get("processed") == 1, timeout=30)
    running = json.loads(run_cli(["status", "--json"], data_dir).stdout)
    assert watch.stop(signal.SIGKILL) == -signal.SIGKILL

    killed = json.loads(run_cli(["status", "--json"], data_dir).stdout)
    assert running["running"] is True
    assert killed["running"] is False
    assert killed["heartbeat_age_seconds"] < 30
    # The next start is not taken for a transformer already running.
    again = spawn(["watch"], service_env(data_dir), name="watch-again")
    again.wait_for_event("transformer_started", timeout=60)
    assert json.loads(run_cli(["status", "--json"], data_dir).stdout)["running"] is True
    assert again.stop() == 0


def test_status_check_fails_when_the_heartbeat_is_stale(data_dir: Path) -> None:
    old = datetime.now(UTC) - timedelta(minutes=5)
    write_json(
        data_dir / "state" / "transformer.status.json",
        {"updated_at": old.isoformat(), "pid": 1, "processed": 3},
    )

    check = run_cli(["status", "--check", "transformer"], data_dir)
    as_json = run_cli(["status", "--json"], data_dir)

    assert check.returncode == 1
    assert "heartbeat" in check.stderr
    assert json.loads(as_json.stdout)["running"] is False
