"""`twitch-bi extract` and `schedule`: exit codes, signals, pings, a service that keeps going."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from extractor import service
from extractor.service import run_crawl, run_schedule
from tests.conftest import REPO, Process, service_env, wait_until
from tests.extractor.support import (
    PingRecorder,
    client_for,
    landed_ids,
    start_pings,
    stop_pings,
    truth_ids,
)
from twitch_bi.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorServer
from twitch_bi.settings import Layout, Settings
from twitch_bi.statefile import read_json

FAST_ENV = {"EXTRACT_MAX_ATTEMPTS": "2", "EXTRACT_BACKOFF_SECONDS": "0.01"}


def settings_for(server: EmulatorServer, data_dir: Path, **changes: Any) -> Settings:
    base = Settings(
        data_dir=data_dir,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        api_base_url=server.api_base_url,
        token_url=server.token_url,
    )
    return replace(base, **changes)


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twitch_bi.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- healthchecks ---------------------------------------------------------------------------


def test_a_landed_crawl_pings_start_then_success_with_a_summary(
    emulator: EmulatorServer, data_dir: Path, pings: PingRecorder
) -> None:
    check = f"{pings.url}/ping/{uuid.uuid4()}"
    settings = settings_for(emulator, data_dir, healthcheck_url=check)

    result = run_crawl(client_for(emulator), settings)

    assert result is not None
    path = check.removeprefix(pings.url)
    assert pings.paths() == [f"{path}/start", path]
    summary = dict(pair.split("=") for pair in pings.pings[1][2].split())
    assert summary == {
        "rows": "500",
        "pages": "5",
        "duration_ms": str(result.duration_ms),
        "duplicates_removed": "0",
        "file": result.path.name,
    }


def test_a_failed_crawl_pings_start_then_fail_with_the_error(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path, pings: PingRecorder
) -> None:
    server = make_emulator(size=300, server_error_rate=1.0)
    check = f"{pings.url}/ping/{uuid.uuid4()}"
    settings = settings_for(server, data_dir, healthcheck_url=check)

    result = run_crawl(client_for(server), settings)

    path = check.removeprefix(pings.url)
    assert result is None
    assert pings.paths() == [f"{path}/start", f"{path}/fail"]
    assert pings.pings[1][2] == "GET /streams failed after 3 attempts on page 1: 503 Service " + (
        "Unavailable for GET /helix/streams"
    )
    status = read_json(Layout(data_dir).state / service.STATUS_FILE)
    assert status is not None
    assert status["consecutive_failures"] == 1


@pytest.mark.parametrize("listening", [True, False], ids=["ping-answered-500", "port-closed"])
def test_a_failed_ping_is_a_warning_and_the_crawl_still_lands(
    emulator: EmulatorServer, data_dir: Path, listening: bool
) -> None:
    recorder = start_pings(status=500)
    url = f"{recorder.url}/ping/abc"
    if not listening:
        stop_pings(recorder)
    settings = settings_for(emulator, data_dir, healthcheck_url=url)

    with structlog.testing.capture_logs() as logs:
        result = run_crawl(client_for(emulator), settings)

    stop_pings(recorder)
    assert result is not None
    assert set(landed_ids(result.path)) == truth_ids(emulator)
    warnings = [entry for entry in logs if entry["event"] == "healthcheck_ping_failed"]
    assert [(entry["kind"], entry["log_level"]) for entry in warnings] == [
        ("start", "warning"),
        ("success", "warning"),
    ]
    assert len(recorder.pings) == (2 if listening else 0)


# -- the service, in this process -------------------------------------------------------------


def test_a_crashed_crawl_never_stops_the_service(
    emulator: EmulatorServer,
    data_dir: Path,
    pings: PingRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_crawl = service.crawl
    calls: list[int] = []

    def crash_then_crawl_then_stop(client: Any, layout: Layout) -> Any:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise KeyError("a field Helix never sent before")
        if len(calls) == 2:
            return real_crawl(client, layout)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises Shutdown right here
        time.sleep(10)
        raise AssertionError("SIGTERM did not stop the service")

    monkeypatch.setattr(service, "crawl", crash_then_crawl_then_stop)
    settings = settings_for(
        emulator, data_dir, extract_every_minutes=0.005, healthcheck_url=f"{pings.url}/hc"
    )

    with structlog.testing.capture_logs() as logs:
        code = run_schedule(settings)

    assert code == 0
    assert calls == [1, 2, 3]
    assert pings.paths() == ["/hc/start", "/hc/fail", "/hc/start", "/hc", "/hc/start"]
    assert pings.pings[1][2] == "KeyError: 'a field Helix never sent before'"
    failed = [entry for entry in logs if entry["event"] == "crawl_failed"]
    assert len(failed) == 1 and failed[0]["exc_info"] is True
    assert [entry["event"] for entry in logs][-2:] == ["crawl_interrupted", "extractor_stopped"]
    assert len(list(Layout(data_dir).landing_streams.iterdir())) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back


# -- the command line, as separate processes --------------------------------------------------


@pytest.mark.parametrize(
    ("present", "named"),
    [
        ({}, "TWITCH_CLIENT_ID and TWITCH_CLIENT_SECRET"),
        ({"TWITCH_CLIENT_ID": "abc"}, "TWITCH_CLIENT_SECRET"),
    ],
)
def test_missing_credentials_end_with_one_line_naming_them(
    data_dir: Path, present: dict[str, str], named: str
) -> None:
    finished = run_cli(["extract"], service_env(data_dir, None, **present))

    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        f"twitch-bi: {named} must be set to the Twitch app's credentials (see .env.example)"
    ]
    assert "Traceback" not in finished.stdout + finished.stderr


def test_refused_credentials_end_extract_with_one_line_naming_them(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    # `schedule` keeps going instead, failing each crawl: tests/deploy/test_services.py.
    server = make_emulator(size=10, client_secret="the-real-secret")

    finished = run_cli(["extract"], service_env(data_dir, server))

    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        "twitch-bi: Twitch refused the app credentials (TWITCH_CLIENT_ID, "
        "TWITCH_CLIENT_SECRET): 403 invalid client secret"
    ]
    assert "Traceback" not in finished.stdout + finished.stderr
    assert server.emulator.stats()["streams_requests"] == 0


@pytest.mark.slow
def test_schedule_crawls_at_start_and_stops_cleanly_between_crawls(
    emulator: EmulatorServer, spawn: Callable[..., Process], data_dir: Path
) -> None:
    env = service_env(data_dir, emulator, EXTRACT_EVERY_MINUTES="60")
    process = spawn(["schedule"], env)

    process.wait_for_event("snapshot_landed")

    assert process.stop(signal.SIGTERM) == 0
    assert [line["event"] for line in process.records()] == [
        "extractor_started",
        "snapshot_landed",
        "extractor_stopped",
    ]
    assert len(list(Layout(data_dir).landing_streams.iterdir())) == 1


@pytest.mark.slow
def test_schedule_never_overlaps_crawls_and_warns_when_one_overruns(
    make_emulator: Callable[..., EmulatorServer], spawn: Callable[..., Process], data_dir: Path
) -> None:
    # An interval of 0.6 s, and crawls of about 1 s: 10 pages at 80 ms each. A minute of
    # simulated time per page gives each snapshot its own name.
    server = make_emulator(size=1000, latency_ms=80, drift_seconds_per_request=60)
    env = service_env(data_dir, server, EXTRACT_EVERY_MINUTES="0.01")
    process = spawn(["schedule"], env)

    process.wait_for_event("crawl_overran_interval", count=3)
    assert process.stop(signal.SIGTERM) == 0

    stats = server.emulator.stats()
    assert stats["max_in_flight"] == 1  # one request at a time, so one crawl at a time
    assert stats["tokens_issued"] == 1  # the token is reused by every crawl
    assert stats["validations"] == 1  # validated at start; the next is due in an hour
    landed = process.events("snapshot_landed")
    assert len(landed) >= len(process.events("crawl_overran_interval")) >= 3
    assert len(list(Layout(data_dir).landing_streams.iterdir())) == len(landed)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_crawl_stops_it_quickly_and_lands_nothing(
    make_emulator: Callable[..., EmulatorServer],
    spawn: Callable[..., Process],
    data_dir: Path,
    sig: signal.Signals,
) -> None:
    server = make_emulator(size=5000, latency_ms=100)  # 50 pages: a five-second crawl
    process = spawn(["schedule"], service_env(data_dir, server, EXTRACT_EVERY_MINUTES="60"))
    wait_until(lambda: server.emulator.stats()["streams_requests"] >= 3, timeout=30)

    code = process.stop(sig, timeout=5)

    layout = Layout(data_dir)
    assert code == 0
    assert server.emulator.stats()["streams_requests"] < 50
    assert [line["event"] for line in process.records()][-2:] == [
        "crawl_interrupted",
        "extractor_stopped",
    ]
    assert list(layout.landing_streams.iterdir()) == []
    assert list(layout.landing_tmp.iterdir()) == []


@pytest.mark.slow
def test_extract_writes_nothing_outside_data_dir_and_the_temp_folder(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    home, cwd, tmp, data = (tmp_path / name for name in ("home", "cwd", "tmp", "data"))
    for folder in (home, cwd, tmp):
        folder.mkdir()
    env = service_env(data, emulator, HOME=str(home), TMPDIR=str(tmp))
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    finished = run_cli(["extract"], env, cwd=cwd)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert list(home.iterdir()) == []
    assert list(cwd.iterdir()) == []
    files = sorted(str(path.relative_to(data)) for path in data.rglob("*") if path.is_file())
    landed = next((data / "landing" / "streams").iterdir()).name
    assert files == [f"landing/streams/{landed}", "state/extractor.status.json"]


@pytest.mark.slow
def test_extract_lands_a_complete_file_of_100000_streams(
    make_emulator: Callable[..., EmulatorServer], data_dir: Path
) -> None:
    server = make_emulator(size=100_000, ratelimit_limit=1_000_000)

    finished = run_cli(["extract"], service_env(data_dir, server))

    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    path = next(Layout(data_dir).landing_streams.iterdir())
    ids = landed_ids(path)
    assert len(ids) == len(set(ids)) == 100_000
    assert set(ids) == truth_ids(server)


def test_dlt_keeps_its_state_under_data_state_with_telemetry_off(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlt.common.configuration import resolve_configuration
    from dlt.common.configuration.specs import RuntimeConfiguration
    from dlt.common.runtime.run_context import RunContext

    from twitch_bi.cli import _prepare_dlt

    monkeypatch.delenv("RUNTIME__DLTHUB_TELEMETRY", raising=False)
    monkeypatch.delenv("DLT_DATA_DIR", raising=False)

    _prepare_dlt(Settings(data_dir=data_dir))

    assert resolve_configuration(RuntimeConfiguration()).dlthub_telemetry is False
    assert RunContext(None).data_dir == str((data_dir / "state" / "dlt").resolve())


@pytest.mark.slow
def test_secrets_never_appear_in_any_output(
    make_emulator: Callable[..., EmulatorServer],
    spawn: Callable[..., Process],
    tmp_path: Path,
    pings: PingRecorder,
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    check = uuid.uuid4().hex
    healthcheck = f"{pings.url}/{check}"
    closed = start_pings()
    unreachable = f"{closed.url}/{check}/"
    stop_pings(closed)
    # Tokens are fetched again mid-crawl, so several of them go by.
    good = make_emulator(size=500, client_secret=secret, expire_token_after_requests=2)
    failing = make_emulator(size=500, client_secret=secret, server_error_rate=1.0)
    refusing = make_emulator(size=10, client_secret=f"not-{secret}")
    slow = make_emulator(size=3000, client_secret=secret, latency_ms=100)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where DATA_DIR should be")
    runs: list[tuple[EmulatorServer, str, dict[str, str], int]] = [
        (good, healthcheck, {}, 0),
        (failing, healthcheck, {"LOG_FORMAT": "console"}, 1),
        (refusing, healthcheck, {}, 2),
        (good, unreachable, {}, 0),
        (good, healthcheck, {"DATA_DIR": str(not_a_folder)}, 1),  # a traceback is logged
        (good, healthcheck, {"DATA_DIR": str(not_a_folder), "LOG_FORMAT": "console"}, 1),
    ]

    outputs = []
    for number, (server, url, extra, code) in enumerate(runs):
        env = service_env(tmp_path / f"data{number}", server, **FAST_ENV)
        env.update(TWITCH_CLIENT_SECRET=secret, HEALTHCHECK_URL=url, LOG_LEVEL="debug", **extra)
        finished = run_cli(["extract"], env)
        outputs.append(finished.stdout + finished.stderr)
        assert finished.returncode == code, outputs[-1]
    env = service_env(tmp_path / "data-schedule", slow, **FAST_ENV)
    env.update(TWITCH_CLIENT_SECRET=secret, HEALTHCHECK_URL=healthcheck, LOG_LEVEL="debug")
    schedule = spawn(["schedule"], env)
    wait_until(lambda: slow.emulator.stats()["streams_requests"] >= 3, timeout=30)
    assert schedule.stop(signal.SIGTERM) == 0
    outputs.append(schedule.log_path.read_text())
    outputs.extend(path.read_text() for path in tmp_path.rglob("*.status.json"))

    text = "\n".join(outputs)
    tokens = [token for server in (good, failing, slow) for token in server.emulator.issued_tokens]
    assert len(tokens) >= 6
    assert "Traceback" in text and "crawl_failed" in text and "token_refused" in text
    assert len(pings.pings) >= 8  # the healthcheck URL was used, not just configured
    for value in (secret, healthcheck, check, *tokens):
        assert value not in text
