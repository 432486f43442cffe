"""The extractor against the emulator over loopback HTTP: complete snapshots or nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from extractor.crawl import crawl
from extractor.helix import HelixClient, HelixError, HelixSettings
from twitch_bi.contract import SNAPSHOT_SCHEMA, CrawlMetadata, snapshot_file_name
from twitch_bi.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorServer
from twitch_bi.settings import Layout

FAST = HelixSettings(max_attempts=2, backoff_factor=0.01, max_retry_delay=0.1)


def client_for(server: EmulatorServer, settings: HelixSettings = FAST) -> HelixClient:
    return HelixClient(
        api_base_url=server.api_base_url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        token_url=server.token_url,
        settings=settings,
    )


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


def test_landed_file_has_the_contract_schema_and_crawl_metadata(
    emulator: EmulatorServer, data_dir: Path
) -> None:
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


def test_streams_seen_twice_under_drift_are_kept_once(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    # A minute of simulated time per page: viewer counts change between pages, streams
    # move up and down the sorted listing, and some are served twice.
    server = make_emulator(size=3000, drift_seconds_per_request=60)

    result = crawl(client_for(server), Layout(data_dir))

    ids = pq.read_table(result.path).column("id").to_pylist()
    assert result.duplicates_removed > 0
    assert len(ids) == len(set(ids)) == result.rows
    assert result.rows + result.duplicates_removed == 3000


def test_a_crawl_that_fails_midway_lands_nothing(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=1000, fail_after_requests=4)
    layout = Layout(data_dir)

    with pytest.raises(HelixError, match="503"):
        crawl(client_for(server), layout)

    assert list(layout.landing_streams.iterdir()) == []
    assert list(layout.landing_tmp.iterdir()) == []
