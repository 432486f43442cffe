"""The extractor against the emulator over loopback HTTP: complete snapshots or nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from extractor.crawl import crawl
from extractor.helix import HelixError
from tests.extractor.support import client_for, crawl_under_drift, landed_ids, live_ids
from twitch_bi.contract import COLUMNS, SNAPSHOT_SCHEMA, CrawlMetadata, snapshot_file_name
from twitch_bi.emulator import EmulatorServer
from twitch_bi.emulator.server import load_fixture
from twitch_bi.settings import Layout


def expected_row(stream: dict[str, Any], snapshot_at: datetime) -> dict[str, Any]:
    """A stream as Helix sent it, typed per the contract: what the landed row must be."""
    row = {name: stream.get(name) for name in COLUMNS}
    row["started_at"] = datetime.fromisoformat(stream["started_at"].replace("Z", "+00:00"))
    row["snapshot_at"] = snapshot_at
    return row


def test_crawl_lands_every_live_stream_once(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=1234)
    truth = server.emulator.truth()

    result = crawl(client_for(server), Layout(data_dir))

    table = pq.read_table(result.path)
    assert result.pages == 13
    assert result.rows == table.num_rows == 1234
    assert sorted(table.column("id").to_pylist()) == sorted(str(i) for i in truth.stream_id)
    assert sorted(table.column("viewer_count").to_pylist()) == sorted(int(v) for v in truth.viewers)
    assert result.path.name == snapshot_file_name(server.emulator.now)
    assert table.column("snapshot_at").unique().to_pylist() == [server.emulator.now]


def test_landed_rows_are_what_helix_said_typed_per_the_contract(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=3000)
    emulator = server.emulator
    live = emulator.truth()
    served = emulator.stream_records(live, 0, len(live))

    result = crawl(client_for(server), Layout(data_dir))

    rows = pq.read_table(result.path).to_pylist()
    assert rows == [expected_row(stream, emulator.now) for stream in served]
    # The population carries every quirk the contract keeps as Twitch said it.
    assert {"", "live"} == {row["type"] for row in rows}
    assert any(row["language"] == "other" for row in rows)
    assert any(row["tags"] is None for row in rows)
    assert any(row["tags"] == [] for row in rows)
    assert any(row["game_id"] == "" and row["game_name"] == "" for row in rows)
    assert any(row["title"] == "" for row in rows)
    assert any("&" in row["title"] for row in rows)  # sent as \u0026, as Twitch does
    assert any(any(ord(char) > 0xFFFF for char in row["title"]) for row in rows)  # emoji


@pytest.mark.parametrize(
    "pages",
    [
        pytest.param(
            (
                "null-tags-docs-derived-twitch_api.json",
                "2019-03-12-old-shape-top-streams-favorite_twitches.json",
                "2023-09-07-raw-minified-single-login-cpp-stream-record.json",
                "2022-12-26-tags-transition-sorted-keys-kameloso.json",
                "2021-08-13-multi-login-escaped-ampersand-twitchdev-issue476.json",
            ),
            id="old-shape-null-tags-ampersand",
        ),
        pytest.param(
            (
                "2024-03-05-language-ca-page1-bigdataUAB.json",
                "2024-03-05-language-ca-page2-bigdataUAB.json",
                "2023-09-07-offline-empty-cpp-stream-record.json",
            ),
            id="short-page-empty-game-offline-end",
        ),
    ],
)
def test_recorded_helix_pages_land_as_twitch_sent_them(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path, pages: tuple[str, ...]
) -> None:
    server = make_emulator(fixture_pages=pages)
    streams = [stream for page in pages for stream in json.loads(load_fixture(page))["data"]]

    result = crawl(client_for(server), Layout(data_dir))

    rows = pq.read_table(result.path).to_pylist()
    assert rows == [expected_row(stream, server.emulator.now) for stream in streams]
    assert (result.pages, result.stop_reason) == (len(pages), "end_of_listing")


def test_recorded_quirks_survive_the_landing(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(
        fixture_pages=(
            "null-tags-docs-derived-twitch_api.json",
            "2019-03-12-old-shape-top-streams-favorite_twitches.json",
            "2021-08-13-multi-login-escaped-ampersand-twitchdev-issue476.json",
        )
    )

    result = crawl(client_for(server), Layout(data_dir))

    rows = {row["id"]: row for row in pq.read_table(result.path).to_pylist()}
    old_shape = [row for row in rows.values() if row["started_at"].year == 2019]
    assert len(old_shape) == 40
    assert all(row["user_login"] is None and row["game_name"] is None for row in old_shape)
    assert all(row["tags"] is None and row["is_mature"] is None for row in old_shape)
    assert any(row["game_id"] == "" and row["title"] == "" for row in old_shape)
    assert any(row["title"].endswith("\n") for row in old_shape)
    assert rows["123456789"]["tags"] is None
    assert rows["123456789"]["language"] == "es"
    assert rows["42939530988"]["game_name"] == "Science & Technology"
    assert rows["42939530988"]["is_mature"] is True


def test_landed_file_has_the_contract_schema_and_crawl_metadata(
    emulator: EmulatorServer, data_dir: Path
) -> None:
    before = datetime.now(UTC)

    result = crawl(client_for(emulator), Layout(data_dir))

    schema = pq.read_schema(result.path)
    metadata = CrawlMetadata.from_schema_metadata(schema.metadata)
    assert schema.remove_metadata().equals(SNAPSHOT_SCHEMA)
    assert metadata is not None
    assert metadata["rows"] == 500
    assert metadata["pages"] == 5
    assert metadata["duplicates_removed"] == 0
    assert metadata["source"] == "emulator"
    assert metadata["stop_reason"] == "end_of_listing"
    started = datetime.fromisoformat(metadata["crawl_started_at"])
    ended = datetime.fromisoformat(metadata["crawl_ended_at"])
    assert before <= started <= ended <= datetime.now(UTC)
    assert (
        metadata["duration_ms"]
        == result.duration_ms
        <= (ended - started) / timedelta(milliseconds=1)
    )


def test_streams_seen_twice_under_drift_are_kept_once(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    # A minute of simulated time per page: viewer counts change between pages, streams
    # move up and down the sorted listing, and some are served twice.
    server = make_emulator(size=3000, drift_seconds_per_request=60)

    result = crawl(client_for(server), Layout(data_dir))

    ids = landed_ids(result.path)
    metadata = CrawlMetadata.from_schema_metadata(pq.read_schema(result.path).metadata)
    assert metadata is not None
    assert result.duplicates_removed > 0
    assert len(ids) == len(set(ids)) == result.rows
    assert result.rows + result.duplicates_removed == server.emulator.stats()["records_served"]
    assert metadata["duplicates_removed"] == result.duplicates_removed


def test_a_crawl_under_drift_misses_few_streams_and_invents_none(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    # Five simulated seconds per request: a 30-page crawl spans two and a half minutes.
    server = make_emulator(size=3000, drift_seconds_per_request=5)
    start = server.emulator.now

    report = crawl_under_drift(server, client_for(server), Layout(data_dir))

    requests = server.emulator.stats()["streams_requests"]
    ever_live = set().union(
        *(live_ids(server, start + timedelta(seconds=5 * n)) for n in range(1, requests + 1))
    )
    landed = set(landed_ids(next(Layout(data_dir).landing_streams.iterdir())))
    assert landed <= ever_live
    assert report.rows + report.duplicates_removed == server.emulator.stats()["records_served"]
    # Measured, not a target: the share the seed gives is 2.4 % (see the extractor's note).
    assert 0 < report.missed_share < 0.05


def test_a_crawl_that_fails_midway_lands_nothing(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=1000, fail_after_requests=4)
    layout = Layout(data_dir)

    with pytest.raises(HelixError, match="503"):
        crawl(client_for(server), layout)

    assert list(layout.landing_streams.iterdir()) == []
    assert list(layout.landing_tmp.iterdir()) == []
