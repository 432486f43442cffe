"""`twitch-bi watch` as a real process with the real observer: files in, reporting out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.conftest import Process, service_env, wait_until, write_snapshot
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


def test_file_present_before_start_is_processed(
    spawn: Callable[..., Process], data_dir: Path
) -> None:
    write_snapshot(data_dir, T0, size=300)

    watch = spawn(["watch"], service_env(data_dir))
    watch.wait_for_event("batch_processed")

    assert reporting_rows(data_dir, T0) == 300
    assert watch.stop() == 0


def test_file_dropped_while_running_is_processed(
    spawn: Callable[..., Process], data_dir: Path
) -> None:
    watch = spawn(["watch"], service_env(data_dir))
    watch.wait_for_event("transformer_started")

    write_snapshot(data_dir, T0, size=250)

    wait_until(lambda: reporting_rows(data_dir, T0) == 250, timeout=30)
    [batch] = watch.wait_for_event("batch_processed")
    assert batch["files"] == 1
    assert batch["rows"] == 250
    assert watch.stop() == 0


def test_non_parquet_file_is_quarantined_and_the_next_file_still_lands(
    spawn: Callable[..., Process], data_dir: Path
) -> None:
    layout = Layout(data_dir)
    watch = spawn(["watch"], service_env(data_dir))
    watch.wait_for_event("transformer_started")

    bad = layout.landing_streams / "streams_20260302T100000Z.parquet"
    bad.write_text("id,viewer_count\n1,2\n", encoding="utf-8")
    [quarantined] = watch.wait_for_event("file_quarantined", timeout=30)
    write_snapshot(data_dir, T1, size=200)
    wait_until(lambda: reporting_rows(data_dir, T1) == 200, timeout=30)

    reason = read_json(layout.quarantine / f"{bad.name}.error.json")
    assert quarantined["file"] == bad.name
    assert reason is not None
    assert "not a readable Parquet file" in reason["reason"]
    assert (layout.quarantine / bad.name).read_text(encoding="utf-8").startswith("id,viewer_count")
    assert not bad.exists()
    assert processed(data_dir) == 1
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
