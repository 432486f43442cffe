"""The emulator's population: deterministic, sorted like Helix, heavy-tailed, and alive."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import numpy as np
import pytest

from twitch_bi.emulator.population import DEFAULT_START, LANGUAGES, MAX_SIZE, Population
from twitch_bi.emulator.server import EmulatorConfig

T0 = DEFAULT_START + timedelta(hours=5)


def test_the_same_seed_gives_the_same_streams_and_another_seed_does_not() -> None:
    first, again, other = (
        Population(seed=3, size=800),
        Population(seed=3, size=800),
        Population(seed=4, size=800),
    )

    live, live_again, live_other = first.live_at(T0), again.live_at(T0), other.live_at(T0)

    for name in ("stream_id", "channel", "game", "viewers", "started_at"):
        assert np.array_equal(getattr(live, name), getattr(live_again, name))
    assert first.records(live, 0, 800) == again.records(live_again, 0, 800)
    assert not np.array_equal(live.viewers, live_other.viewers)
    assert first.records(live, 0, 800) != other.records(live_other, 0, 800)


def test_streams_are_sorted_by_viewers_then_id_like_helix() -> None:
    live = Population(size=5000).live_at(T0)

    viewers, ids = live.viewers, live.stream_id
    assert np.all(np.diff(viewers) <= 0)
    ties = np.diff(viewers) == 0
    assert np.all(np.diff(ids)[ties] > 0)
    assert len(np.unique(ids)) == len(ids) == 5000


def test_viewers_have_a_heavy_tail() -> None:
    viewers = np.sort(Population(size=20_000).live_at(T0).viewers)[::-1]

    top_share = viewers[:200].sum() / viewers.sum()
    assert top_share > 0.5  # the top 1 % of streams hold most of the viewers
    assert 0.05 < np.mean(viewers == 0) < 0.2  # about a tenth have nobody watching
    assert np.median(viewers) <= 5
    assert viewers[0] > 1000 * max(1.0, np.median(viewers))  # and a few draw crowds


def test_games_and_languages_follow_twitch_mix() -> None:
    population = Population(size=20_000, games=300)
    live = population.live_at(T0)

    games = Counter(population.game_of(int(game))[0] for game in live.game)
    languages = Counter(
        LANGUAGES[int(index)][0] for index in population.channel_language[live.channel]
    )
    assert 0.005 < games[""] / len(live) < 0.02  # about one in a hundred has no game
    assert len(games) > 250
    assert 0.1 < games.most_common(1)[0][1] / len(live) < 0.3  # one game leads, not all
    assert len({name for _, name in population.games}) == 300  # names are unique
    assert languages.most_common(1)[0][0] == "en"
    assert 0.38 < languages["en"] / len(live) < 0.46
    assert set(languages) == {code for code, _ in LANGUAGES}  # "other" included


def test_streams_start_end_change_game_and_viewers_over_time() -> None:
    population = Population(size=2000)
    before, after = population.live_at(T0), population.live_at(T0 + timedelta(hours=2))

    ids_before, ids_after = set(before.stream_id.tolist()), set(after.stream_id.tolist())
    assert ids_before - ids_after  # streams ended
    assert ids_after - ids_before  # others started
    assert len(after) == len(before) == 2000  # as many live at any moment
    both = sorted(ids_before & ids_after)
    game_then = dict(zip(before.stream_id.tolist(), before.game.tolist(), strict=True))
    game_now = dict(zip(after.stream_id.tolist(), after.game.tolist(), strict=True))
    assert any(game_then[stream] != game_now[stream] for stream in both)
    started_then = dict(zip(before.stream_id.tolist(), before.started_at.tolist(), strict=True))
    started_now = dict(zip(after.stream_id.tolist(), after.started_at.tolist(), strict=True))
    assert all(started_then[stream] == started_now[stream] for stream in both)
    assert np.all(after.started_at <= int((T0 + timedelta(hours=2)).timestamp()))

    minute_later = population.live_at(T0 + timedelta(minutes=1))
    viewers_then = dict(zip(before.stream_id.tolist(), before.viewers.tolist(), strict=True))
    changed = [
        viewers_then[stream] != viewers
        for stream, viewers in zip(
            minute_later.stream_id.tolist(), minute_later.viewers.tolist(), strict=True
        )
        if stream in viewers_then and viewers > 20
    ]
    assert sum(changed) > 0.5 * len(changed)


def test_some_channels_rename_themselves_and_keep_their_user_id() -> None:
    population = Population(size=400)
    logins: dict[str, list[str]] = defaultdict(list)

    for hours in range(0, 8 * 24, 3):
        live = population.live_at(DEFAULT_START + timedelta(hours=hours))
        for record in population.records(live, 0, len(live)):
            if record["user_login"] not in logins[record["user_id"]]:
                logins[record["user_id"]].append(record["user_login"])

    renamed = {user: names for user, names in logins.items() if len(names) > 1}
    assert renamed
    assert all(len(names) == 2 and names[1] == f"{names[0]}_tv" for names in renamed.values())


def test_population_size_goes_up_to_150000() -> None:
    live = Population(size=MAX_SIZE).live_at(T0)

    assert len(live) == 150_000
    with pytest.raises(ValueError, match="between 1 and 150000"):
        Population(size=MAX_SIZE + 1)
    with pytest.raises(ValueError, match="size must be between 1 and 150000"):
        EmulatorConfig(size=MAX_SIZE + 1)
