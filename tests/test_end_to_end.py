"""The whole pipeline as separate processes: emulator → extract → landing → watch → reporting."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, Process, service_env, wait_until
from twitch_bi.emulator import EmulatorServer
from twitch_bi.statefile import read_json

pytestmark = pytest.mark.slow

INTERVAL = timedelta(minutes=15)


def test_pipeline_matches_the_emulators_truth(
    make_emulator: Callable[..., EmulatorServer],
    spawn: Callable[..., Process],
    data_dir: Path,
) -> None:
    server = make_emulator(size=800)
    env = service_env(data_dir, server)
    watch = spawn(["watch"], env)
    watch.wait_for_event("transformer_started")

    snapshot_times = []
    for _ in range(4):
        snapshot_times.append(server.emulator.now)
        subprocess.run(
            [sys.executable, "-m", "twitch_bi.cli", "extract"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        server.emulator.advance(INTERVAL.total_seconds())

    wait_until(
        lambda: (
            (read_json(data_dir / "state" / "transformer.status.json") or {}).get("processed") == 4
        ),
        timeout=90,
    )
    assert watch.stop() == 0

    # What the models should say, from the emulator's own truth: every snapshot is 15
    # minutes after the previous one, so each weighs 900 s (the first weighs one interval).
    expected_hours: dict[str, float] = defaultdict(float)
    expected_streams = {}
    population = server.emulator.population
    for at in snapshot_times:
        live = server.emulator.truth(at)
        expected_streams[at] = len(live)
        for game, viewers in zip(live.game, live.viewers, strict=True):
            game_id = population.game_of(int(game))[0] or None
            expected_hours[game_id] += int(viewers) * 900 / 3600

    con = duckdb.connect()
    reporting = data_dir / "reporting"
    streams_per_snapshot = dict(
        con.execute(
            f"""
            select snapshot_at, count(*)
            from read_parquet('{reporting}/fct_stream_snapshots/*/*.parquet')
            group by snapshot_at
            """
        ).fetchall()
    )
    hours_by_game = dict(
        con.execute(
            f"""
            select game_id, sum(hours_watched)
            from read_parquet('{reporting}/fct_streams/*/*.parquet')
            group by game_id
            """
        ).fetchall()
    )
    assert streams_per_snapshot == expected_streams
    assert hours_by_game.keys() == expected_hours.keys()
    for game_id, hours in expected_hours.items():
        assert hours_by_game[game_id] == pytest.approx(hours, rel=1e-12)
