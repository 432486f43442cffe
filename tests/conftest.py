"""Fixtures shared by every test: the emulator on loopback, data folders, real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from extractor.landing import SnapshotBuffer, land_snapshot
from tests.processes import JsonLinesProcess
from twitch_bi.contract import CrawlMetadata
from twitch_bi.emulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    Emulator,
    EmulatorConfig,
    EmulatorServer,
)
from twitch_bi.settings import Layout

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators on free loopback ports; each is shut down after the test."""
    servers: list[EmulatorServer] = []

    def start(**config: Any) -> EmulatorServer:
        server = EmulatorServer(Emulator(EmulatorConfig(**config)))
        server.start_in_thread()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def emulator(make_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return make_emulator(size=500)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    Layout(path).ensure()
    return path


def service_env(
    data_dir: Path, emulator: EmulatorServer | None = None, **extra: str
) -> dict[str, str]:
    """The environment a compose service would get, pointed at the emulator."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWITCH_", "HEALTHCHECK", "TRANSFORMER_HEALTHCHECK"))
    }
    env.update(
        DATA_DIR=str(data_dir),
        LOG_FORMAT="json",
        LOG_LEVEL="info",
        PYTHONUNBUFFERED="1",
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    if emulator is not None:
        env.update(
            TWITCH_API_BASE_URL=emulator.api_base_url,
            TWITCH_TOKEN_URL=emulator.token_url,
            TWITCH_CLIENT_ID=DEFAULT_CLIENT_ID,
            TWITCH_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        )
    env.update(extra)
    return env


class Process(JsonLinesProcess):
    """A `twitch-bi` subprocess whose stdout (JSON lines) is kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "twitch_bi.cli", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout=timeout)
        finally:
            self._log.close()
        return code


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start `twitch-bi` subprocesses; any still running at the end is killed."""
    processes: list[Process] = []

    def start(args: list[str], env: dict[str, str], name: str | None = None) -> Process:
        log_path = tmp_path / f"{name or args[0]}-{len(processes)}.log"
        process = Process(args, env, log_path)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait()
        process._log.close()


def write_snapshot(
    data_dir: Path,
    at: datetime,
    *,
    size: int = 300,
    seed: int = 7,
    folder: Path | None = None,
) -> Path:
    """A landed snapshot file of the emulator's truth at `at`, written as the extractor would."""
    emulator = Emulator(EmulatorConfig(size=size, seed=seed))
    live = emulator.truth(at)
    buffer = SnapshotBuffer()
    buffer.add(emulator.stream_records(live, 0, len(live)))
    layout = Layout(data_dir)
    metadata = CrawlMetadata(
        crawl_started_at=at.isoformat(),
        crawl_ended_at=(at + timedelta(seconds=1)).isoformat(),
        duration_ms=1000,
        pages=(len(live) + 99) // 100,
        rows=buffer.rows,
        duplicates_removed=0,
        source="emulator",
        extractor_version="test",
        stop_reason="end_of_listing",
    )
    return land_snapshot(
        buffer.to_table(at),
        metadata,
        at,
        landing_dir=folder or layout.landing_streams,
        tmp_dir=layout.landing_tmp,
    )


def wait_until(predicate: Callable[[], Any], timeout: float = 60, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message or f"condition not met within {timeout} s")
