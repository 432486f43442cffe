"""The central invariant: however files arrive, the incremental path equals a rebuild."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.dbt.conftest import (
    T0,
    Snapshot,
    emulator_snapshot,
    land,
    reporting_state,
    warehouse_state,
)
from transformer.worker import Worker

pytestmark = pytest.mark.slow

# Around midnight, with a short gap (10 min), a regular one and an outage (70 min,
# weighed at the 30-minute cap).
OFFSETS = (0, 15, 30, 40, 55, 70, 140, 155)
TIMES = [T0 + timedelta(minutes=offset) for offset in OFFSETS]


def base_snapshot(index: int) -> Snapshot:
    """The emulator's truth, with a channel renaming itself for good after midnight
    and another one that takes a name for a single snapshot and goes back."""
    snapshot = emulator_snapshot(TIMES[index])
    records = [dict(record) for record in snapshot.records]
    records.sort(key=lambda record: record["user_id"])
    for position, record in enumerate(records[:2]):
        renamed = (position == 0 and index >= 4) or (position == 1 and index == 3)
        if renamed:
            record["user_login"] = f"{record['user_login']}_tv"
            record["user_name"] = f"{record['user_name']}_TV"
    return Snapshot(snapshot.at, records)


def variant(snapshot: Snapshot, seed: int) -> Snapshot:
    """The same snapshot delivered again with other content: streams gone, viewers and
    a category changed, one more channel renamed."""
    records = [dict(record) for record in snapshot.records[seed % 5 :]]
    for record in records[::3]:
        record["viewer_count"] = int(record["viewer_count"]) + 7 * (seed + 1)
    if records:
        records[-1]["game_id"] = ""
        records[-1]["game_name"] = ""
        records[0]["user_login"] = f"{records[0]['user_login']}_x{seed}"
    return replace(snapshot, records=records)


@st.composite
def deliveries(draw: st.DrawFn) -> list[list[tuple[Any, ...]]]:
    """Batches of actions: land a snapshot (in any order), deliver a file twice, drop
    a changed file under a processed name, move a file's content to another time, or
    ask for a file to be reprocessed."""
    order = draw(st.permutations(range(len(TIMES))))
    batches: list[list[tuple[Any, ...]]] = [[]]
    landed: list[int] = []
    for index in order:
        batches[-1].append(("land", index))
        landed.append(index)
        if draw(st.integers(0, 2)) == 0:
            batches.append([])
    extras = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["again", "changed", "moved", "reprocess"]),
                st.sampled_from(landed),
                st.integers(0, 3),
            ),
            max_size=4,
        )
    )
    for action in extras:
        batches.append([action])
    return [batch for batch in batches if batch]


def play(worker: Worker, data_dir: Path, batches: list[list[tuple[Any, ...]]]) -> None:
    for batch in batches:
        for action, index, *rest in batch:
            snapshot = base_snapshot(index)
            if action == "land":
                land(data_dir, snapshot)
            elif action == "again":
                land(data_dir, snapshot)  # same content, new modification time
            elif action == "changed":
                land(data_dir, variant(snapshot, rest[0]))
            elif action == "moved":
                # The file now holds a time of its own, between two crawls.
                land(data_dir, snapshot, holds=snapshot.at + timedelta(minutes=5))
            elif action == "reprocess":
                worker.force([f"streams_{snapshot.at.strftime('%Y%m%dT%H%M%SZ')}.parquet"])
        worker.process(worker.pending())
        assert worker.last_error is None, worker.last_error


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=deliveries())
# Found by this test: a broadcast whose only sighting moved to another time.
@example(
    batches=[
        [("land", 0)],
        [("land", 4)],
        [("land", 6)],
        [("land", 1)],
        [("land", 7)],
        [("land", 5)],
        [("land", 3)],
        [("land", 2)],
        [("moved", 6, 2)],
        [("changed", 7, 2)],
        [("moved", 0, 1)],
        [("moved", 1, 0)],
    ]
)
def test_incremental_path_equals_a_rebuild(
    make_worker: Callable[[Path], Worker], batches: list[list[tuple[Any, ...]]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        worker = make_worker(data_dir)
        play(worker, data_dir, batches)
        incremental = warehouse_state(worker)
        incremental_files = reporting_state(worker.layout.reporting)

        worker.reset()
        worker.process(worker.pending())

        assert worker.last_error is None
        assert warehouse_state(worker) == incremental
        assert reporting_state(worker.layout.reporting) == incremental_files
