"""Fixtures for the deploy tests: services started as compose would start them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deploy.services import ServiceProcess


@pytest.fixture
def spawn_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start services, each in an empty working folder of its own (the image's read-only
    /app); any still running at the end is killed."""
    started: list[ServiceProcess] = []

    def start(service: str, env: dict[str, str]) -> ServiceProcess:
        workdir = tmp_path / f"workdir-{service}-{len(started)}"
        workdir.mkdir()
        process = ServiceProcess(service, env, workdir, tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
