"""Helpers for the extractor's tests: a fast Helix client and what a snapshot should hold."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from extractor.crawl import crawl
from extractor.helix import HelixClient, HelixSettings
from twitch_bi.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorServer
from twitch_bi.settings import Layout

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


def live_ids(server: EmulatorServer, at: datetime) -> set[str]:
    return {str(stream_id) for stream_id in server.emulator.truth(at).stream_id.tolist()}


@dataclass(frozen=True)
class DriftReport:
    """How a crawl under viewer drift compares with the emulator's truth."""

    live_throughout: int  # live at the first request and still at the last one
    missed: int  # of those, not in the file
    duplicates_removed: int
    rows: int
    live_at_end: int
    simulated_seconds: float

    @property
    def missed_share(self) -> float:
        return self.missed / self.live_throughout


def crawl_under_drift(server: EmulatorServer, client: HelixClient, layout: Layout) -> DriftReport:
    """Crawl once with the emulator's clock moving, and count what the file missed.

    A stream id is one broadcast, so a stream live at the first and at the last request
    was live all the way through the crawl: the file should have it.
    """
    emulator = server.emulator
    step = emulator.config.drift_seconds_per_request
    before = emulator.now
    result = crawl(client, layout)
    first, last = before + timedelta(seconds=step), emulator.now

    throughout = live_ids(server, first) & live_ids(server, last)
    missed = throughout - set(landed_ids(result.path))
    return DriftReport(
        live_throughout=len(throughout),
        missed=len(missed),
        duplicates_removed=result.duplicates_removed,
        rows=result.rows,
        live_at_end=len(emulator.truth(last)),
        simulated_seconds=(last - before).total_seconds(),
    )


class PingRecorder(ThreadingHTTPServer):
    """A stand-in for healthchecks.io on loopback: records every ping, answers `status`."""

    daemon_threads = True

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.pings: list[tuple[str, str, str]] = []  # method, path, body
        super().__init__(("127.0.0.1", 0), _PingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.pings]


class _PingHandler(BaseHTTPRequestHandler):
    server: PingRecorder

    def do_POST(self) -> None:
        self._record()

    def do_GET(self) -> None:
        self._record()

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.pings.append((self.command, self.path, body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_pings(status: int = 200) -> PingRecorder:
    recorder = PingRecorder(status)
    thread = threading.Thread(
        target=recorder.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return recorder


def stop_pings(recorder: PingRecorder) -> None:
    if recorder.socket.fileno() != -1:
        recorder.shutdown()
        recorder.server_close()
