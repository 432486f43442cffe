"""kill -9 and SIGTERM at random moments during batches: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Process, service_env, wait_until, write_snapshot
from tests.transformer.conftest import clean_run, ledger_rows, reporting_tables, status
from transformer import control
from twitch_bi.settings import Layout, Settings

pytestmark = pytest.mark.slow

# Each trial is one transformer process (about 4 s on two cores). KILL_TRIALS=100 runs
# the long version; the seed makes a failure repeatable.
TRIALS = int(os.environ.get("KILL_TRIALS", "12"))
SEED = int(os.environ.get("KILL_SEED", "20260302"))
# Snapshots on both sides of midnight: late files change two days' partitions.
TIMES = [datetime(2026, 3, 2, 22, 45, tzinfo=UTC) + timedelta(minutes=15 * i) for i in range(10)]


def _arrivals(rng: random.Random, staging: Path, data_dir: Path) -> list[Path]:
    """Every snapshot in a random order, and new content for three of them later on."""
    first = [write_snapshot(data_dir, moment, size=40, folder=staging / "v1") for moment in TIMES]
    rng.shuffle(first)
    arrivals = list(first)
    for moment in rng.sample(TIMES, 3):
        replacement = write_snapshot(data_dir, moment, size=40, seed=11, folder=staging / "v2")
        earliest = next(i for i, path in enumerate(arrivals) if path.name == replacement.name)
        arrivals.insert(rng.randint(earliest + 1, len(arrivals)), replacement)
    return arrivals


def _wait_for_work(process: Process, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.popen.poll() is None:
        if process.events("batch_started") or process.events("batch_resumed"):
            return True
        time.sleep(0.05)
    return False


def test_kill_9_at_random_moments_gives_the_output_of_a_clean_run(
    spawn: Callable[..., Process], data_dir: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a repeatable test order, not cryptography
    layout = Layout(data_dir)
    arrivals = _arrivals(rng, tmp_path / "staging", data_dir)
    env = service_env(data_dir, LOG_LEVEL="debug")

    kills = terms = busy = 0
    processes: list[Process] = []
    for trial in range(TRIALS):
        watch = spawn(["watch"], env, name=f"trial-{trial}")
        processes.append(watch)
        for _ in range(rng.randint(1, 3)):
            if arrivals:
                path = arrivals.pop(0)
                os.replace(path, layout.landing_streams / path.name)
        if not arrivals and trial % 2:
            control.submit(Settings(data_dir=data_dir), "reprocess", files=[], since="2026-03-02")
        busy += _wait_for_work(watch)
        time.sleep(rng.uniform(0, 1.5))
        if trial % 4 == 3:
            # SIGTERM: the batch is finished (or left staged), and the exit is clean.
            started = time.monotonic()
            assert watch.stop(signal.SIGTERM, timeout=30) == 0
            assert time.monotonic() - started < 30
            terms += 1
        else:
            watch.stop(signal.SIGKILL)
            kills += 1

    for path in arrivals:
        os.replace(path, layout.landing_streams / path.name)
    final = spawn(["watch"], env, name="final")
    wait_until(
        lambda: (
            status(data_dir).get("processed") == len(TIMES)
            and status(data_dir).get("pending") == 0
            and status(data_dir).get("pid") == final.popen.pid
        ),
        timeout=120,
        message=f"not all processed: {status(data_dir)}",
    )
    assert final.stop() == 0
    processes.append(final)
    # A process that finds a batch staged by the one before was killed in mid-batch:
    # the kills did land inside batches, not only between them.
    resumed = sum(len(process.events("batch_resumed")) for process in processes)

    landed = sorted(layout.landing_streams.glob("*.parquet"))
    ledger = ledger_rows(data_dir)
    assert (kills, terms) == (TRIALS - TRIALS // 4, TRIALS // 4)
    assert busy >= TRIALS // 2
    assert resumed >= max(1, kills // 4), f"only {resumed} of {kills} kills hit a batch"
    assert len(landed) == len(TIMES)
    assert {name: row["status"] for name, row in ledger.items()} == {
        path.name: "done" for path in landed
    }
    assert not list(layout.quarantine.iterdir())
    assert not list(layout.reporting.rglob("*.tmp"))
    assert reporting_tables(data_dir) == clean_run(landed, tmp_path)
