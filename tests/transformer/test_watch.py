"""`twitch-bi watch` as a real process with the real observer: files in, reporting out."""

from __future__ import annotations

import json
import queue
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from tests.conftest import Process, service_env, wait_until, write_snapshot
from transformer.service import LandingHandler
from twitch_bi.settings import Layout
from twitch_bi.statefile import read_json

pytestmark = pytest.mark.slow

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)


def reporting_rows(data_dir: Path, snapshot: datetime) -> int:
    path = (
        data_dir
        / "reporting"
        / "fct_stream_snapshots"
        / f"date={snapshot.date()}"
        / f"fct_stream_snapshots_{snapshot.strftime('%Y%m%dT%H%M%SZ')}.parquet"
    )
    return pq.read_metadata(path).num_rows if path.exists() else -1


def processed(data_dir: Path) -> int:
    status = read_json(data_dir / "state" / "transformer.status.json") or {}
    return int(status.get("processed", 0))


def test_files_present_before_start_are_processed_in_one_batch_with_json_logs_only(
    spawn: Callable[..., Process], data_dir: Path
) -> None:
    times = [T0 + timedelta(minutes=15 * index) for index in range(5)]
    for moment in times:
        write_snapshot(data_dir, moment, size=120)

    watch = spawn(["watch"], service_env(data_dir, LOG_LEVEL="debug"))
    [batch] = watch.wait_for_event("batch_processed")
    assert watch.stop() == 0

    assert batch["files"] == 5
    assert batch["rows"] == 600
    assert all(reporting_rows(data_dir, moment) == 120 for moment in times)
    builds = [line for line in watch.events("dbt_invoked") if line["command"] == "build"]
    assert len(builds) == 1
    # dbt's own events come through structlog as JSON lines: no coloured text, nothing raw.
    text = watch.log_path.read_text(encoding="utf-8")
    assert "\x1b[" not in text
    assert all(json.loads(line)["service"] == "transformer" for line in text.splitlines())
    assert len(watch.events("dbt_event")) > 5
    # A batch costs what it holds: no data test over the whole history of a mart runs.
    tests_run = [line["msg"] for line in watch.events("dbt_event") if " PASS " in line["msg"]]
    assert tests_run
    assert not [msg for msg in tests_run if "fct_" in msg]


@pytest.mark.parametrize("polling", ["0", "1"], ids=["inotify", "polling"])
def test_file_dropped_while_running_is_processed(
    spawn: Callable[..., Process], data_dir: Path, polling: str
) -> None:
    watch = spawn(["watch"], service_env(data_dir, WATCH_POLLING=polling))
    [started] = watch.wait_for_event("transformer_started")

    write_snapshot(data_dir, T0, size=250)

    wait_until(lambda: reporting_rows(data_dir, T0) == 250, timeout=30)
    [batch] = watch.wait_for_event("batch_processed")
    assert started["polling"] is (polling == "1")
    assert (started["observer"] == "PollingObserver") is (polling == "1")
    assert batch["files"] == 1
    assert batch["rows"] == 250
    assert watch.stop() == 0


def test_slow_copy_is_waited_for_and_ignored_names_are_left_alone(
    spawn: Callable[..., Process], data_dir: Path, tmp_path: Path
) -> None:
    layout = Layout(data_dir)
    source = write_snapshot(data_dir, T0, size=400, folder=tmp_path)
    content = source.read_bytes()
    ignored = [
        f".streams_{T1:%Y%m%dT%H%M%SZ}.parquet",
        f"streams_{T1:%Y%m%dT%H%M%SZ}.parquet.tmp",
        f"streams_{T1:%Y%m%dT%H%M%SZ}.parquet.partial",
    ]
    for name in ignored:
        (layout.landing_streams / name).write_bytes(content)
    watch = spawn(["watch"], service_env(data_dir))
    watch.wait_for_event("transformer_started")

    # A hand copy that stalls half way for longer than the settle time, then finishes.
    with open(layout.landing_streams / source.name, "wb") as copy:
        copy.write(content[: len(content) // 2])
        copy.flush()
        time.sleep(3.5)
        copy.write(content[len(content) // 2 :])

    wait_until(lambda: reporting_rows(data_dir, T0) == 400, timeout=30)
    assert watch.stop() == 0
    assert not list(layout.quarantine.iterdir())
    assert processed(data_dir) == 1
    assert all((layout.landing_streams / name).exists() for name in ignored)
    assert reporting_rows(data_dir, T1) == -1


def test_observer_that_dies_is_noticed_and_restarted(
    spawn: Callable[..., Process], data_dir: Path
) -> None:
    layout = Layout(data_dir)
    watch = spawn(["watch"], service_env(data_dir))
    watch.wait_for_event("transformer_started")

    # Deleting the watched folder (a remount does the same) stops inotify's emitter.
    shutil.rmtree(layout.landing_streams)
    [died] = watch.wait_for_event("observer_died", timeout=10)
    layout.landing_streams.mkdir(parents=True, exist_ok=True)
    watch.wait_for_event("observer_restarted", timeout=10)
    write_snapshot(data_dir, T0, size=100)

    wait_until(lambda: reporting_rows(data_dir, T0) == 100, timeout=30)
    assert died["level"] == "error"
    assert watch.stop() == 0


def test_fct_streams_hours_watched_follow_the_weighting_rule(
    spawn: Callable[..., Process], data_dir: Path
) -> None:
    # Two snapshots 15 minutes apart: each weighs 900 s, so a stream's hours watched on
    # the day are (v0 + v1) * 900 / 3600 whatever else the models do.
    first = write_snapshot(data_dir, T0, size=200)
    second = write_snapshot(data_dir, T1, size=200)

    watch = spawn(["watch"], service_env(data_dir))
    wait_until(lambda: processed(data_dir) == 2, timeout=60)
    assert watch.stop() == 0

    con = duckdb.connect()
    expected = dict(
        con.execute(
            f"""
            select user_id, sum(viewer_count) * 900 / 3600.0
            from read_parquet(['{first}', '{second}'])
            group by user_id
            """
        ).fetchall()
    )
    actual = dict(
        con.execute(
            f"""
            select user_id, sum(hours_watched)
            from read_parquet('{data_dir}/reporting/fct_streams/*/*.parquet')
            group by user_id
            """
        ).fetchall()
    )
    assert actual.keys() == expected.keys()
    for user_id, hours in expected.items():
        assert actual[user_id] == pytest.approx(hours)


def test_handler_only_enqueues_complete_candidate_names() -> None:
    names: queue.Queue[tuple[str, bool]] = queue.Queue()
    handler = LandingHandler(names)
    folder = "/data/landing/streams"

    handler.dispatch(FileCreatedEvent(f"{folder}/streams_20260302T100000Z.parquet"))
    handler.dispatch(FileClosedEvent(f"{folder}/streams_20260302T100000Z.parquet"))
    handler.dispatch(FileClosedNoWriteEvent(f"{folder}/streams_20260302T101500Z.parquet"))
    handler.dispatch(FileOpenedEvent(f"{folder}/streams_20260302T101500Z.parquet"))
    handler.dispatch(
        FileMovedEvent(
            f"{folder}/.streams_x.parquet.tmp", f"{folder}/streams_20260302T103000Z.parquet"
        )
    )
    for ignored in (".streams_a.parquet", "streams_a.parquet.tmp", "streams_a.parquet.partial"):
        handler.dispatch(FileCreatedEvent(f"{folder}/{ignored}"))
    handler.dispatch(DirCreatedEvent(f"{folder}/streams_dir.parquet"))

    queued = []
    while not names.empty():
        queued.append(names.get_nowait())
    assert queued == [
        ("streams_20260302T100000Z.parquet", False),
        ("streams_20260302T100000Z.parquet", True),
        ("streams_20260302T103000Z.parquet", True),
    ]
