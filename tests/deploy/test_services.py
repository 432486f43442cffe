"""Both services run from compose.yml's commands and environment, as real processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, wait_until, write_snapshot
from tests.deploy import files
from tests.deploy.services import TWITCH_BI, ServiceProcess, compose_env, healthcheck
from twitch_bi.emulator import DEFAULT_CLIENT_SECRET, EmulatorServer
from twitch_bi.settings import Layout
from twitch_bi.statefile import read_json

pytestmark = pytest.mark.slow

LEVELS = {"debug", "info", "warning", "error", "critical"}
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
HAND_DROPPED_AT = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def snapshot_rows(data_dir: Path, snapshot_at: datetime) -> int:
    """Rows of one snapshot in the reporting Parquet, read the way a BI tool reads it."""
    folder = data_dir / "reporting" / "fct_stream_snapshots"
    if not any(folder.glob("date=*/*.parquet")):
        return -1
    [(rows,)] = (
        duckdb.connect()
        .execute(
            f"""
            select count(*)
            from read_parquet('{folder}/*/*.parquet', hive_partitioning = true)
            where snapshot_at = ?
            """,
            [snapshot_at],
        )
        .fetchall()
    )
    return int(rows)


def readme_query(data_dir: Path) -> str:
    """The README's DuckDB example, pointed at `data_dir` and at every date."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [sql] = re.findall(r"```sql\n(.*?)```", readme, flags=re.DOTALL)
    sql = sql.replace("'data/reporting/", f"'{data_dir}/reporting/")
    return re.sub(r"'\d{4}-\d{2}-\d{2}'", "'2000-01-01'", sql)


def file_snapshot(path: Path) -> tuple[datetime, int]:
    """The snapshot time and row count a landed file holds, read from the file itself."""
    table = pq.read_table(path, columns=["snapshot_at"])
    return table.column("snapshot_at")[0].as_py(), table.num_rows


def exec_in(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`docker compose exec transformer twitch-bi ARGS`: a second process, same environment."""
    return subprocess.run(
        [TWITCH_BI, *args], env=env, capture_output=True, text=True, check=True, timeout=60
    )


def batch_led_by(process: ServiceProcess, name: str, after: int) -> bool:
    """Whether a batch after the first `after` ones started with the file `name` (the
    oldest snapshot of a batch goes first)."""
    return any(e["first_file"] == name for e in process.events("batch_processed")[after:])


def drop_by_hand(source: Path, landing: Path) -> Path:
    """Copy a file into landing/streams/ the way a person would: in place, not renamed in."""
    target = landing / source.name
    shutil.copyfile(source, target)
    return target


def assert_log_contract(process: ServiceProcess) -> list[dict[str, Any]]:
    """Every stdout line is one JSON object with the fields of DESIGN.md's Logs section."""
    records = []
    for line in process.stdout().splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() == timedelta(0), line
        assert record["level"] in LEVELS, line
        assert record["service"] == process.service, line
        assert SNAKE_CASE.match(record["event"]), line
        records.append(record)
    assert process.stderr() == ""
    return records


def test_services_run_as_compose_runs_them(
    make_emulator: Callable[..., EmulatorServer],
    spawn_service: Callable[..., ServiceProcess],
    data_dir: Path,
    tmp_path: Path,
) -> None:
    # The emulator's clock moves 5 minutes a request: each crawl (3 pages) is a new snapshot.
    server = make_emulator(size=300, drift_seconds_per_request=300)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        name: compose_env(name, data_dir, server, HOME=str(home), EXTRACT_EVERY_MINUTES="0.05")
        for name in files.PIPELINE_SERVICES
    }
    landing = Layout(data_dir).landing_streams

    transformer = spawn_service("transformer", env["transformer"])
    extractor = spawn_service("extractor", env["extractor"])

    # Crawls land, one file each, and the transformer turns each into reporting rows.
    landed = extractor.wait_for_event("snapshot_landed", count=2, timeout=60)
    assert landed[0]["file"] != landed[1]["file"]
    for event in landed[:2]:
        snapshot_at, rows = file_snapshot(landing / event["file"])
        wait_until(lambda at=snapshot_at, n=rows: snapshot_rows(data_dir, at) == n, timeout=90)

    # A file dropped by hand is processed into its own date's partition; dropping a new
    # version under the same name replaces that snapshot's rows.
    outside = tmp_path / "outside"
    first = write_snapshot(outside, HAND_DROPPED_AT, size=200, folder=outside / "v1")
    second = write_snapshot(outside, HAND_DROPPED_AT, size=120, seed=8, folder=outside / "v2")
    assert first.name == second.name
    drop_by_hand(first, landing)
    wait_until(
        lambda: snapshot_rows(data_dir, HAND_DROPPED_AT) == file_snapshot(first)[1], timeout=60
    )
    assert (data_dir / "reporting" / "fct_stream_snapshots" / "date=2024-01-01").is_dir()
    drop_by_hand(second, landing)
    wait_until(
        lambda: snapshot_rows(data_dir, HAND_DROPPED_AT) == file_snapshot(second)[1], timeout=60
    )

    # make status, reprocess and rebuild, beside the running transformer.
    status = json.loads(exec_in(env["transformer"], "status", "--json").stdout)
    assert status["running"]
    assert status["processed"] >= 3
    done = len(transformer.events("batch_processed"))
    exec_in(env["transformer"], "reprocess", second.name)
    wait_until(lambda: batch_led_by(transformer, second.name, after=done), timeout=60)
    done = len(transformer.events("batch_processed"))
    exec_in(env["transformer"], "rebuild")
    transformer.wait_for_event("warehouse_reset")
    wait_until(lambda: batch_led_by(transformer, second.name, after=done), timeout=60)
    assert snapshot_rows(data_dir, HAND_DROPPED_AT) == file_snapshot(second)[1]

    # A reader following the README finds the tables.
    assert duckdb.connect().execute(readme_query(data_dir)).fetchall()

    # The containers' health checks pass while both work.
    for name in files.PIPELINE_SERVICES:
        check = healthcheck(name, env[name])
        assert check.returncode == 0, check.stderr

    # SIGTERM, as `docker compose stop` sends: both exit 0 within their grace period.
    for process in (extractor, transformer):
        grace = files.compose()["services"][process.service]["stop_grace_period"]
        assert process.stop(timeout=files.parse_duration(grace)) == 0

    records = assert_log_contract(extractor) + assert_log_contract(transformer)
    events = {record["event"] for record in records}
    assert {"snapshot_landed", "batch_processed", "extractor_stopped"} <= events
    assert {"reprocess_requested", "rebuild_requested", "transformer_stopped"} <= events
    assert DEFAULT_CLIENT_SECRET not in extractor.stdout() + transformer.stdout()
    # Nothing outside DATA_DIR: the image's /app is read-only and its HOME a tmpfs.
    assert not any(extractor.workdir.iterdir())
    assert not any(transformer.workdir.iterdir())
    assert not any(home.iterdir())


def test_extractor_is_healthy_during_its_first_crawl(
    make_emulator: Callable[..., EmulatorServer],
    spawn_service: Callable[..., ServiceProcess],
    data_dir: Path,
) -> None:
    # Four requests of a second each (token check, three pages): the first crawl takes 4 s.
    server = make_emulator(size=300, latency_ms=1000)
    env = compose_env("extractor", data_dir, server)
    status_file = Layout(data_dir).state / "extractor.status.json"

    extractor = spawn_service("extractor", env)
    wait_until(lambda: (read_json(status_file) or {}).get("crawl_started_at"), timeout=30)
    during = healthcheck("extractor", env)
    checked_during_first_crawl = "last_attempt_at" not in (read_json(status_file) or {})
    extractor.wait_for_event("snapshot_landed", timeout=60)
    after = healthcheck("extractor", env)

    assert checked_during_first_crawl
    assert during.returncode == 0, during.stderr
    assert after.returncode == 0, after.stderr
    assert extractor.stop() == 0


def test_refused_credentials_make_the_extractor_unhealthy_and_stay_secret(
    make_emulator: Callable[..., EmulatorServer],
    spawn_service: Callable[..., ServiceProcess],
    data_dir: Path,
) -> None:
    server = make_emulator(size=50)
    secret = "not-the-app-secret-4f1c9e"
    env = compose_env(
        "extractor", data_dir, server, TWITCH_CLIENT_SECRET=secret, EXTRACT_EVERY_MINUTES="0.02"
    )

    extractor = spawn_service("extractor", env)
    failed = extractor.wait_for_event("crawl_failed", count=3, timeout=60)
    check = healthcheck("extractor", env)
    assert extractor.stop() == 0

    assert "credentials" in failed[0]["error"]
    assert check.returncode == 1
    assert "crawls failed" in check.stderr and "credentials" in check.stderr
    assert secret not in check.stderr + extractor.stdout() + extractor.stderr()
    assert not any(Layout(data_dir).landing_streams.iterdir())
