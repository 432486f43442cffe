"""Landing a snapshot: the file appears whole in landing/streams/, or not at all."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from extractor import landing
from extractor.landing import SnapshotBuffer, land_snapshot, remove_partials
from twitch_bi.contract import CrawlMetadata
from twitch_bi.settings import Layout

AT = datetime(2026, 3, 2, 12, tzinfo=UTC)
STREAM = {
    "id": "1",
    "user_id": "2",
    "user_login": "a",
    "user_name": "A",
    "game_id": "",
    "game_name": "",
    "type": "live",
    "title": "x",
    "tags": None,
    "viewer_count": 3,
    "started_at": "2026-03-02T11:00:00Z",
    "language": "other",
    "thumbnail_url": "",
    "is_mature": False,
}
METADATA = CrawlMetadata(
    crawl_started_at=AT.isoformat(),
    crawl_ended_at=AT.isoformat(),
    duration_ms=1,
    pages=1,
    rows=1,
    duplicates_removed=1,
    source="emulator",
    extractor_version="test",
    stop_reason="end_of_listing",
)


def test_a_stream_seen_again_is_kept_once_as_first_seen() -> None:
    buffer = SnapshotBuffer()

    buffer.add([STREAM])
    buffer.add([{**STREAM, "viewer_count": 99}, {**STREAM, "id": "5"}])

    table = buffer.to_table(AT)
    assert table.column("id").to_pylist() == ["1", "5"]
    assert table.column("viewer_count").to_pylist() == [3, 3]
    assert (buffer.rows, buffer.duplicates_removed) == (2, 1)


def test_a_stream_without_an_id_is_refused() -> None:
    with pytest.raises(ValueError, match="no string id"):
        SnapshotBuffer().add([{**STREAM, "id": None}])


def test_a_write_interrupted_by_a_signal_leaves_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(data_dir)
    buffer = SnapshotBuffer()
    buffer.add([STREAM])

    def half_written(table: Any, where: Path, **_kwargs: Any) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(landing.pq, "write_table", half_written)

    with pytest.raises(KeyboardInterrupt):
        land_snapshot(
            buffer.to_table(AT),
            METADATA,
            AT,
            landing_dir=layout.landing_streams,
            tmp_dir=layout.landing_tmp,
        )

    assert list(layout.landing_streams.iterdir()) == []
    assert list(layout.landing_tmp.iterdir()) == []


def test_partials_left_by_a_killed_crawl_are_removed(data_dir: Path) -> None:
    layout = Layout(data_dir)
    (layout.landing_tmp / "streams_20260302T000000Z.parquet.partial").write_bytes(b"PAR1")

    removed = remove_partials(layout.landing_tmp)

    assert removed == 1
    assert list(layout.landing_tmp.iterdir()) == []


def test_landed_file_is_complete_and_carries_the_metadata(data_dir: Path) -> None:
    layout = Layout(data_dir)
    buffer = SnapshotBuffer()
    buffer.add([STREAM])

    path = land_snapshot(
        buffer.to_table(AT),
        METADATA,
        AT,
        landing_dir=layout.landing_streams,
        tmp_dir=layout.landing_tmp,
    )

    assert path.name == "streams_20260302T120000Z.parquet"
    assert CrawlMetadata.from_schema_metadata(pq.read_schema(path).metadata) == {
        "crawl_started_at": AT.isoformat(),
        "crawl_ended_at": AT.isoformat(),
        "duration_ms": 1,
        "pages": 1,
        "rows": 1,
        "duplicates_removed": 1,
        "source": "emulator",
        "extractor_version": "test",
        "stop_reason": "end_of_listing",
    }
