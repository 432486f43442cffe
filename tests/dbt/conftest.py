"""Fixtures for the dbt models: small snapshots from the emulator, workers sharing one parse."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from extractor.landing import SnapshotBuffer, land_snapshot
from transformer.dbt_runner import DbtProject
from transformer.worker import Worker, WorkerOptions
from twitch_bi.contract import CrawlMetadata
from twitch_bi.emulator import Emulator, EmulatorConfig
from twitch_bi.settings import Layout, Settings

# Every exported model, and the intermediate tables the incremental path keeps.
MARTS = (
    "fct_stream_snapshots",
    "fct_streams",
    "fct_broadcasts",
    "agg_games_daily",
    "agg_snapshots",
    "dim_channels",
    "dim_channel_names",
    "dim_games",
    "int_stream_days",
    "int_game_snapshots",
)


@pytest.fixture(scope="session")
def dbt_manifest(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The dbt project parsed once for the session (a parse takes seconds)."""
    project = DbtProject(tmp_path_factory.mktemp("parse"))
    project.parse()
    return project._manifest


@pytest.fixture
def make_worker(dbt_manifest: Any) -> Iterator[Callable[[Path], Worker]]:
    """Workers on their own data folders that reuse the session's parse."""
    workers: list[Worker] = []

    def make(data_dir: Path) -> Worker:
        worker = Worker(Settings(data_dir=data_dir), WorkerOptions(max_batch_files=48))
        worker.dbt._manifest = dbt_manifest
        worker.specs = worker.dbt.exports()
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()


@dataclass(frozen=True)
class Snapshot:
    """One snapshot's rows as the extractor would land them, and the time it is named for."""

    at: datetime
    records: list[dict[str, Any]]


def emulator_snapshot(at: datetime, *, size: int = 40, seed: int = 11) -> Snapshot:
    """Every stream the emulator has live at `at`, as Helix would send them."""
    emulator = Emulator(EmulatorConfig(size=size, seed=seed))
    live = emulator.truth(at)
    return Snapshot(at, emulator.stream_records(live, 0, len(live)))


def land(data_dir: Path, snapshot: Snapshot, *, holds: datetime | None = None) -> Path:
    """Land the snapshot under its own name; `holds` puts another time inside the file."""
    buffer = SnapshotBuffer()
    buffer.add(snapshot.records)
    inside = holds or snapshot.at
    metadata = CrawlMetadata(
        crawl_started_at=inside.isoformat(),
        crawl_ended_at=(inside + timedelta(seconds=1)).isoformat(),
        duration_ms=1000,
        pages=1,
        rows=buffer.rows,
        duplicates_removed=0,
        source="emulator",
        extractor_version="test",
        stop_reason="end_of_listing",
    )
    table: pa.Table = buffer.to_table(inside)
    layout = Layout(data_dir).ensure()
    path = land_snapshot(
        table, metadata, inside, landing_dir=layout.landing_tmp, tmp_dir=layout.landing_tmp
    )
    final = layout.landing_streams / f"streams_{snapshot.at.strftime('%Y%m%dT%H%M%SZ')}.parquet"
    path.replace(final)
    return final


def warehouse_state(worker: Worker) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every mart, sorted, so two warehouses compare exactly."""
    return {
        model: sorted(worker.con.execute(f"select * from main.{model}").fetchall(), key=_sort_key)
        for model in MARTS
    }


def reporting_state(reporting: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every reporting file's rows, sorted, by path under reporting/."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    return {
        str(path.relative_to(reporting)): sorted(
            con.execute("select * from read_parquet(?)", [str(path)]).fetchall(), key=_sort_key
        )
        for path in sorted(reporting.rglob("*.parquet"))
    }


def _sort_key(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(repr(value) for value in row)


T0 = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
