"""`twitch-bi emulator`: serve the Helix emulator until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading

import structlog

from twitch_bi.emulator.server import Emulator, EmulatorConfig, EmulatorServer
from twitch_bi.settings import SettingsError

log = structlog.get_logger(__name__)


def run_emulator(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; `--config` takes any `EmulatorConfig` field as JSON."""
    try:
        if not isinstance(args.config, dict):
            raise TypeError("--config must be a JSON object")
        config = EmulatorConfig(seed=args.seed, size=args.size)
        config.update(args.config)
    except (ValueError, TypeError) as error:
        raise SettingsError(f"emulator settings: {error}") from None
    server = EmulatorServer(Emulator(config), host=args.host, port=args.port)
    stopped = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start_in_thread()
    log.info(
        "emulator_started",
        url=server.url,
        api_base_url=server.api_base_url,
        token_url=server.token_url,
        size=config.size,
        seed=config.seed,
        now=server.emulator.stats()["now"],
    )
    stopped.wait()
    server.shutdown()
    server.server_close()
    log.info("emulator_stopped", **server.emulator.stats())
    return 0
