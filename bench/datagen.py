"""Realistic snapshot files, fast: the emulator's population, written with Arrow, not dicts.

The extractor builds a snapshot from Helix's JSON; for benchmarks we need hundreds of
100,000-stream snapshots in minutes, so this writes the same contract columns straight
from the emulator's numpy arrays (the same streams, viewers, games and languages the
emulator would serve at that instant).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from extractor.landing import land_snapshot
from twitch_bi.contract import SNAPSHOT_SCHEMA, CrawlMetadata
from twitch_bi.emulator.population import LANGUAGES, Population

_TITLES = (
    "ranked grind | road to top 500",
    "chill stream",
    "first playthrough 🎮",
    "¡vamos!",
    "チャレンジ中",
    "랭크 게임",
    "стрим с чатом",
    "İlk kez oynuyoruz",
    "speedrun attempts",
    "late night vibes ✨",
    "drops enabled",
    "",
    ".",
    "giveaway at 1k | !discord",
)
_TAG_SETS: tuple[list[str], ...] = (
    ["English"],
    ["English", "Chill"],
    ["Español", "Competitive", "FPS"],
    ["IRL"],
    ["Japanese", "RPG"],
    ["Korean"],
    ["Català", "multilingüe"],
    ["Speedrun", "Retro"],
    [],
)


class SnapshotFactory:
    """Writes the population's live streams at any instant as a landed snapshot file."""

    def __init__(self, size: int = 100_000, seed: int = 7) -> None:
        self.population = population = Population(seed=seed, size=size, games=3000)
        channels = np.arange(population.channel_user_id.shape[0])
        logins = np.array([f"user{c}_{(c * 2654435761) % 9973}" for c in channels], dtype=object)
        self._login = pa.array(np.concatenate([logins, logins + "_tv"]), type=pa.string())
        names = np.array([s[:1].upper() + s[1:] for s in logins], dtype=object)
        self._name = pa.array(np.concatenate([names, names + "_TV"]), type=pa.string())
        self._thumb = pa.array(
            [
                f"https://static-cdn.jtvnw.net/previews-ttv/live_user_{login}-{{width}}x{{height}}.jpg"
                for login in np.concatenate([logins, logins + "_tv"])
            ],
            type=pa.string(),
        )
        self._user_id = pa.array(
            population.channel_user_id.astype(np.int64).astype(str), type=pa.string()
        )
        self._language = pa.array(
            [LANGUAGES[i][0] for i in population.channel_language], type=pa.string()
        )
        self._mature = pa.array(population.channel_mature)
        game_ids = [g for g, _ in population.games] + [""]
        game_names = [n for _, n in population.games] + [""]
        self._game_id = pa.array(game_ids, type=pa.string())
        self._game_name = pa.array(game_names, type=pa.string())
        self._titles = pa.array(_TITLES, type=pa.string())
        self._tags = pa.array([*_TAG_SETS, None], type=pa.list_(pa.string()))

    def table(self, at: datetime) -> pa.Table:
        live = self.population.live_at(at)
        n = len(live)
        channel = live.channel
        renamed = int(at.timestamp()) >= self.population.channel_renamed_at[channel]
        name_index = pa.array(channel + renamed * self.population.channel_user_id.shape[0])
        game = np.where(live.game < 0, len(self.population.games), live.game)
        title = (live.stream_id * 7 + channel) % len(_TITLES)
        tags = np.where(live.stream_id % 33 == 0, len(_TAG_SETS), channel % len(_TAG_SETS))
        columns = {
            "id": pa.array(live.stream_id.astype(str), type=pa.string()),
            "user_id": self._user_id.take(pa.array(channel)),
            "user_login": self._login.take(name_index),
            "user_name": self._name.take(name_index),
            "game_id": self._game_id.take(pa.array(game)),
            "game_name": self._game_name.take(pa.array(game)),
            "type": pa.array(["live"], type=pa.string()).take(pa.array(np.zeros(n, np.int64))),
            "title": self._titles.take(pa.array(title)),
            "tags": self._tags.take(pa.array(tags)),
            "viewer_count": pa.array(live.viewers, type=pa.int64()),
            "started_at": pa.array(live.started_at * 1_000_000, type=pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "language": self._language.take(pa.array(channel)),
            "thumbnail_url": self._thumb.take(name_index),
            "is_mature": self._mature.take(pa.array(channel)),
            "snapshot_at": pa.array(np.full(n, int(at.timestamp()) * 1_000_000, np.int64)).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
        return pa.Table.from_pydict(columns, schema=SNAPSHOT_SCHEMA)

    def write(self, at: datetime, landing: Path, tmp: Path) -> Path:
        table = self.table(at)
        metadata = CrawlMetadata(
            crawl_started_at=at.isoformat(),
            crawl_ended_at=(at + timedelta(seconds=60)).isoformat(),
            duration_ms=60_000,
            pages=(table.num_rows + 99) // 100,
            rows=table.num_rows,
            duplicates_removed=0,
            source="emulator",
            extractor_version="bench",
            stop_reason="end_of_listing",
        )
        return land_snapshot(table, metadata, at, landing_dir=landing, tmp_dir=tmp)


def snapshot_times(start: datetime, count: int, minutes: int = 15) -> list[datetime]:
    return [start + timedelta(minutes=minutes * i) for i in range(count)]


START = datetime(2026, 3, 2, tzinfo=UTC)
