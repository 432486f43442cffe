"""agg_games_daily per category and day, computed from the emulator's truth without dbt."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.dbt.conftest import T0, Snapshot, land
from transformer.worker import Worker
from twitch_bi.emulator import Emulator, EmulatorConfig

pytestmark = pytest.mark.slow

INTERVAL = 900  # EXTRACT_EVERY_MINUTES = 15
# The first snapshot, a regular gap, a short one, an outage (weighed at the cap),
# and midnight in between.
TIMES = [T0 + timedelta(minutes=minutes) for minutes in (0, 15, 25, 95, 110, 125)]
SIZE = 150


def expected_by_game(emulator: Emulator) -> dict[tuple[str, str | None], dict[str, float]]:
    """agg_games_daily's measures from the emulator's own streams and the weighting rule."""
    weights = {}
    for previous, at in zip([None, *TIMES], TIMES, strict=False):
        gap = INTERVAL if previous is None else int((at - previous).total_seconds())
        weights[at] = min(gap, 2 * INTERVAL)
    covered: dict[str, int] = defaultdict(int)
    viewer_seconds: dict[tuple[str, str | None], int] = defaultdict(int)
    peak: dict[tuple[str, str | None], int] = defaultdict(int)
    channels: dict[tuple[str, str | None], set[int]] = defaultdict(set)
    channel_seconds: dict[tuple[str, str | None], int] = defaultdict(int)
    peak_channels: dict[tuple[str, str | None], int] = defaultdict(int)
    by_channel: dict[tuple[str, str | None], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    population = emulator.population
    for at in TIMES:
        day = at.date().isoformat()
        covered[day] += weights[at]
        live = emulator.truth(at)
        totals: dict[str | None, int] = defaultdict(int)
        live_channels: dict[str | None, int] = defaultdict(int)
        for game, viewers, channel in zip(live.game, live.viewers, live.channel, strict=True):
            game_id = population.game_of(int(game))[0] or None
            key = (day, game_id)
            totals[game_id] += int(viewers)
            live_channels[game_id] += 1
            viewer_seconds[key] += int(viewers) * weights[at]
            channel_seconds[key] += weights[at]
            channels[key].add(int(channel))
            user_id = str(int(population.channel_user_id[int(channel)]))
            by_channel[key][user_id] += int(viewers) * weights[at]
        for game_id, viewers in totals.items():
            peak[(day, game_id)] = max(peak[(day, game_id)], viewers)
            peak_channels[(day, game_id)] = max(
                peak_channels[(day, game_id)], live_channels[game_id]
            )
    return {
        key: {
            "hours_watched": seconds / 3600,
            "avg_viewers": seconds / covered[key[0]],
            "peak_viewers": peak[key],
            "channel_count": len(channels[key]),
            "hours_streamed": channel_seconds[key] / 3600,
            "avg_channels": channel_seconds[key] / covered[key[0]],
            "peak_channels": peak_channels[key],
            # the most hours watched, the smallest user id among equals
            "top_user_id": min(by_channel[key].items(), key=lambda item: (-item[1], item[0]))[0],
        }
        for key, seconds in viewer_seconds.items()
    }


def test_games_daily_measures_match_the_emulators_truth(
    make_worker: Callable[[Path], Worker], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    worker = make_worker(data_dir)
    emulator = Emulator(EmulatorConfig(size=SIZE, seed=5))
    # Delivered out of order: the outage's end first, the short gap last.
    for batch in ([0, 1], [3, 4, 5], [2]):
        for index in batch:
            land(data_dir, snapshot_at(emulator, TIMES[index]))
        worker.process(worker.pending())

    con = duckdb.connect()
    rows = con.execute(
        f"""
        select
            cast(stream_date as varchar), game_id, hours_watched, avg_viewers,
            peak_viewers, channel_count, hours_streamed, avg_channels, peak_channels,
            top_user_id
        from read_parquet('{worker.layout.reporting}/agg_games_daily/*/*.parquet')
        """
    ).fetchall()
    reported = {
        (day, game_id): {
            "hours_watched": hours,
            "avg_viewers": average,
            "peak_viewers": peak,
            "channel_count": channels,
            "hours_streamed": streamed,
            "avg_channels": average_channels,
            "peak_channels": peak_channels,
            "top_user_id": top,
        }
        for (
            day,
            game_id,
            hours,
            average,
            peak,
            channels,
            streamed,
            average_channels,
            peak_channels,
            top,
        ) in rows
    }

    assert worker.last_error is None
    assert reported == expected_by_game(emulator)


def snapshot_at(emulator: Emulator, at: datetime) -> Snapshot:
    live = emulator.truth(at)
    return Snapshot(at, emulator.stream_records(live, 0, len(live)))
