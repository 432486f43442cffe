"""Helpers for the extractor's tests: a fast Helix client and what a snapshot should hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from extractor.helix import HelixClient, HelixSettings
from twitch_bi.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorServer

# Retries a test can afford: a few attempts, backoff in hundredths of a second. The retry
# delay cap stays above one second so that a wait for `Ratelimit-Reset` is never cut short.
FAST = HelixSettings(max_attempts=3, backoff_factor=0.01, max_retry_delay=2.0, read_timeout=2.0)


def client_for(server: EmulatorServer, settings: HelixSettings = FAST, **extra: Any) -> HelixClient:
    """A Helix client pointed at the emulator with its default credentials."""
    return HelixClient(
        api_base_url=server.api_base_url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        token_url=server.token_url,
        settings=settings,
        **extra,
    )


def landed_ids(path: Path) -> list[str]:
    ids: list[str] = pq.read_table(path, columns=["id"]).column("id").to_pylist()
    return ids


def truth_ids(server: EmulatorServer) -> set[str]:
    """The ids of the streams live now, by the emulator's own account."""
    return {str(stream_id) for stream_id in server.emulator.truth().stream_id.tolist()}
