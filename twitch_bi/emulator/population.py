"""A deterministic population of Twitch live streams: who is live at any moment, and how many watch.

The model is built for speed with numpy so that 150,000 live streams can be re-sorted on
every page request when viewer drift is on. There are `size` broadcast *slots*; each slot
hosts back-to-back broadcasts of one slot-specific length, rotating over three channels
that belong to that slot only (so a channel is never live twice at once). Everything is a
pure function of (seed, time): the same seed gives the same streams at the same instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

CHANNELS_PER_SLOT = 3
MAX_SLOTS = 1 << 18  # stream ids pack the slot into 18 bits
MAX_SIZE = 150_000  # about Twitch's busiest hour
DEFAULT_START = datetime(2026, 3, 2, tzinfo=UTC)

# Twitch's language mix, roughly: English first, a long tail after it.
LANGUAGES = (
    ("en", 0.42),
    ("es", 0.10),
    ("ko", 0.06),
    ("ja", 0.06),
    ("pt", 0.07),
    ("de", 0.05),
    ("fr", 0.05),
    ("ru", 0.06),
    ("zh", 0.03),
    ("it", 0.03),
    ("tr", 0.02),
    ("pl", 0.02),
    ("ca", 0.005),
    ("other", 0.015),
)
_GAME_WORDS = (
    "Just Chatting",
    "Grand Theft",
    "League",
    "Counter",
    "Valor",
    "Fort",
    "Mine",
    "Apex",
    "Dota",
    "Over",
    "Rust",
    "Dead",
    "World",
    "Call",
    "Elden",
    "Poke",
    "Star",
    "Final",
    "Street",
    "Tarkov",
    "Slots",
    "Music",
    "Art",
    "Chess",
    "Sports",
    "Retro",
    "Lost",
)
_GAME_TAILS = (
    "",
    " Legends",
    " Craft",
    " Strike",
    " Quest",
    " Tactics",
    " Online",
    " Arena",
    " Kart",
    " Story",
    " Royale",
    " Simulator",
    " Party",
    " II",
    " III",
    " Remastered",
)
_SYLLABLES = (
    "ka",
    "zu",
    "mi",
    "ro",
    "ne",
    "ta",
    "lo",
    "vi",
    "xo",
    "pe",
    "dra",
    "kin",
    "sha",
    "bo",
    "ly",
    "qu",
    "est",
    "ar",
    "ion",
    "fox",
    "wolf",
    "byte",
    "nova",
    "pix",
)
_TITLE_PARTS = (
    "ranked grind",
    "chill stream",
    "first playthrough",
    "road to top 500",
    "¡vamos!",
    "new setup 🎮",
    "チャレンジ中",
    "랭크 게임",
    "стрим",
    "İlk kez",
    "speedrun attempts",
    "late night vibes ✨",
    "Science & Technology",
    "giveaway at 1k",
    "drops enabled",
    "learning the game",
    "with viewers",
    "",
    ".",
)
_TAGS = (
    "English",
    "Español",
    "Chill",
    "Competitive",
    "FPS",
    "RPG",
    "Speedrun",
    "IRL",
    "Català",
    "multilingüe",
    "Japanese",
    "Korean",
    "Retro",
    "Cozy",
    "Music",
)


def _mix(*keys: np.ndarray | int) -> np.ndarray:
    """A splitmix64-style hash of integer keys, as uint64; the source of all randomness."""
    with np.errstate(over="ignore"):
        h: np.ndarray = np.asarray(np.uint64(0x9E3779B97F4A7C15))
        for key in keys:
            h = h ^ (np.asarray(key).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
    return np.asarray(h, dtype=np.uint64)


def _uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Deterministic uniforms in [0, 1) from integer keys."""
    return (_mix(*keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class LiveStreams:
    """Every live stream at one instant, sorted by viewers descending (ties by id)."""

    at: datetime
    stream_id: np.ndarray  # int64
    channel: np.ndarray  # int64 index into the channel arrays
    game: np.ndarray  # int64 index into the games, -1 for "no game"
    viewers: np.ndarray  # int64
    started_at: np.ndarray  # int64 epoch seconds
    slot: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.stream_id.shape[0])


class Population:
    """Channels, games and broadcast slots for one seed."""

    def __init__(
        self,
        *,
        seed: int = 7,
        size: int = 3000,
        games: int = 300,
        start: datetime = DEFAULT_START,
    ) -> None:
        if not 1 <= size <= MAX_SIZE:
            raise ValueError(f"population size must be between 1 and {MAX_SIZE}, got {size}")
        self.seed = seed
        self.size = size
        self.start = start
        self.epoch = int(start.timestamp())
        self.games = self._make_games(games)
        self._channels: dict[int, _Channel] = {}

        slots = np.arange(size, dtype=np.int64)
        # Broadcast lengths: 1.5 h to 12 h, most around 4 h; Twitch ends streams at 48 h.
        self.slot_length = (3600 * (1.5 + 10.5 * _uniform(seed, 1, slots) ** 2)).astype(np.int64)
        self.slot_phase = (_uniform(seed, 2, slots) * self.slot_length).astype(np.int64)

        channels = np.arange(size * CHANNELS_PER_SLOT, dtype=np.int64)
        self.channel_user_id = 10_000_000 + channels * 37 + (_mix(seed, 3, channels) % 37)
        # Heavy tail (Pareto, alpha about 1.08): most channels have a handful of viewers,
        # a tenth of live streams have none, the top one percent hold over half of all
        # viewers once the population is large (tests/twitch_bi/emulator checks it).
        u = _uniform(seed, 4, channels)
        self.channel_popularity = np.minimum(
            0.7 + 4.0 * ((1.0 - u) ** (-1 / 1.08) - 1.0), 300_000.0
        )
        ranks = (_uniform(seed, 5, channels) ** 3 * len(self.games)).astype(np.int64)
        self.channel_game = np.minimum(ranks, len(self.games) - 1)
        weights = np.array([w for _, w in LANGUAGES])
        self.channel_language = np.searchsorted(
            np.cumsum(weights / weights.sum()), _uniform(seed, 6, channels), side="right"
        ).clip(0, len(LANGUAGES) - 1)
        self.channel_mature = _uniform(seed, 7, channels) < 0.12
        # About one channel in forty renames itself, at a moment within the first week.
        self.channel_renamed_at = np.where(
            _uniform(seed, 8, channels) < 0.025,
            self.epoch + (_uniform(seed, 9, channels) * 7 * 86400).astype(np.int64),
            np.iinfo(np.int64).max,
        )

    def _make_games(self, count: int) -> list[tuple[str, str]]:
        games: list[tuple[str, str]] = []
        seen: set[str] = set()
        index = 0
        while len(games) < count:
            word = _GAME_WORDS[int(_mix(self.seed, 10, index) % len(_GAME_WORDS))]
            tail = _GAME_TAILS[int(_mix(self.seed, 11, index) % len(_GAME_TAILS))]
            name = f"{word}{tail}"
            if name in seen:
                name = f"{name} {index}"
            seen.add(name)
            game_id = str(int(20_000 + _mix(self.seed, 12, index) % 900_000_000))
            games.append((game_id, name))
            index += 1
        return games

    # -- the state at an instant ---------------------------------------------------------

    def live_at(self, at: datetime) -> LiveStreams:
        """Every stream live at `at`, sorted as Helix sorts them: by viewers, descending."""
        return _live_at(self, int(at.timestamp()))

    def records(self, live: LiveStreams, start: int, end: int) -> list[dict[str, Any]]:
        """Streams `start` to `end` of `live` as Helix serialises them, in Helix's key order."""
        seed = self.seed
        at = int(live.at.timestamp())
        stream_ids = live.stream_id[start:end]
        channels = live.channel[start:end]
        title_first = _mix(seed, 40, stream_ids) % len(_TITLE_PARTS)
        tag_roll = _mix(seed, 50, stream_ids) % 100
        untyped = _mix(seed, 60, stream_ids) % 400 == 0
        renamed = at >= self.channel_renamed_at[channels]
        self._cache_channels(channels)
        records = []
        for i in range(end - start):
            stream_id = int(stream_ids[i])
            channel = int(channels[i])
            static = self._channels[channel]
            login = static.login_renamed if renamed[i] else static.login
            name = static.name_renamed if renamed[i] else static.name
            first = _TITLE_PARTS[int(title_first[i])]
            roll = int(tag_roll[i])
            game_id, game_name = self.game_of(int(live.game[start + i]))
            records.append(
                {
                    "id": str(stream_id),
                    "user_id": static.user_id,
                    "user_login": login,
                    "user_name": name,
                    "game_id": game_id,
                    "game_name": game_name,
                    "type": "" if untyped[i] else "live",
                    "title": _title(first, static.title_tail),
                    "viewer_count": int(live.viewers[start + i]),
                    "started_at": iso(int(live.started_at[start + i])),
                    "language": static.language,
                    "thumbnail_url": (
                        "https://static-cdn.jtvnw.net/previews-ttv/"
                        f"live_user_{login}-{{width}}x{{height}}.jpg"
                    ),
                    "tag_ids": [],
                    "tags": None if roll < 3 else [] if roll < 8 else list(static.tags),
                    "is_mature": static.is_mature,
                }
            )
        return records

    def _cache_channels(self, channels: np.ndarray) -> None:
        """Compute the strings of the channels not seen yet, vectorised over the page."""
        new = np.unique(channels[[int(c) not in self._channels for c in channels]])
        if new.size == 0:
            return
        seed = self.seed
        syllables = [_mix(seed, 20 + i, new) % len(_SYLLABLES) for i in range(3)]
        styles = _mix(seed, 30, new) % 20
        tag_counts = 1 + _mix(seed, 51, new) % 5
        tag_picks = [_mix(seed, 52 + i, new) % len(_TAGS) for i in range(5)]
        tails = _mix(seed, 41, new) % len(_TITLE_PARTS)
        for j, channel in enumerate(int(c) for c in new):
            login = "".join(_SYLLABLES[int(part[j])] for part in syllables) + f"_{channel}"
            renamed = f"{login}_tv"
            style = int(styles[j])
            self._channels[channel] = _Channel(
                user_id=str(int(self.channel_user_id[channel])),
                login=login,
                name=_display_name(login, channel, style),
                login_renamed=renamed,
                name_renamed=_display_name(renamed, channel, style),
                language=LANGUAGES[int(self.channel_language[channel])][0],
                is_mature=bool(self.channel_mature[channel]),
                title_tail=_TITLE_PARTS[int(tails[j])],
                tags=tuple(_TAGS[int(tag_picks[i][j])] for i in range(int(tag_counts[j]))),
            )

    def game_of(self, game: int) -> tuple[str, str]:
        if game < 0:
            return "", ""
        return self.games[game]


@dataclass(frozen=True)
class _Channel:
    """A channel's strings, computed once."""

    user_id: str
    login: str
    name: str
    login_renamed: str
    name_renamed: str
    language: str
    is_mature: bool
    title_tail: str
    tags: tuple[str, ...]


def _title(first: str, tail: str) -> str:
    if first in {"", "."} or not tail or tail in {".", first}:
        return first
    return f"{first} | {tail}"


def _display_name(login: str, channel: int, style: int) -> str:
    if style == 0:
        return f"스트리머{channel}"
    if style == 1:
        return f"主播{channel}"
    if style == 2:
        return login.upper()
    if style < 6:
        return login
    return login[:1].upper() + login[1:]


@lru_cache(maxsize=8)
def _live_at(population: Population, at: int) -> LiveStreams:
    seed = population.seed
    slots = np.arange(population.size, dtype=np.int64)
    length = population.slot_length
    offset = at - population.epoch - population.slot_phase
    index = np.floor_divide(offset, length)
    started = population.epoch + population.slot_phase + index * length
    channel = slots + population.size * np.mod(index, CHANNELS_PER_SLOT)
    stream_id = 40_000_000_000 + (np.mod(index, 1 << 20) << 18) + slots

    # A fifth of broadcasts switch game somewhere in their middle; one in a hundred
    # has no game at all (Helix sends empty strings).
    game = population.channel_game[channel].copy()
    switch = _uniform(seed, 70, stream_id) < 0.2
    switch_at = started + ((0.3 + 0.4 * _uniform(seed, 71, stream_id)) * length).astype(np.int64)
    other = (_uniform(seed, 72, stream_id) ** 3 * len(population.games)).astype(np.int64)
    game = np.where(switch & (at >= switch_at), other, game)
    game = np.where(_uniform(seed, 73, stream_id) < 0.01, -1, game)

    # Viewers ramp up over the first half hour, wobble with a per-stream rhythm and a
    # per-minute jitter, and never go below zero.
    age = (at - started).astype(np.float64)
    ramp = np.minimum(1.0, 0.25 + age / 2400.0)
    phase = _uniform(seed, 74, stream_id)
    wobble = 1.0 + 0.15 * np.sin(2 * np.pi * (age / 5400.0 + phase))
    jitter = 0.9 + 0.2 * _uniform(seed, 75, stream_id, at // 60)
    viewers = np.floor(population.channel_popularity[channel] * ramp * wobble * jitter)
    viewers = np.maximum(viewers, 0).astype(np.int64)

    order = np.lexsort((stream_id, -viewers))
    return LiveStreams(
        at=datetime.fromtimestamp(at, tz=UTC),
        stream_id=stream_id[order],
        channel=channel[order],
        game=game[order],
        viewers=viewers[order],
        started_at=started[order],
        slot=slots[order],
    )


def iso(epoch_seconds: int) -> str:
    """Helix's timestamp format: second precision, `Z`."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=int(epoch_seconds))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
