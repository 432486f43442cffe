"""Fixtures of the extractor's tests: a healthchecks.io stand-in on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.extractor.support import PingRecorder, start_pings, stop_pings


@pytest.fixture
def pings() -> Iterator[PingRecorder]:
    recorder = start_pings()
    yield recorder
    stop_pings(recorder)
