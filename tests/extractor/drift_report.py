"""How many live streams a crawl misses under viewer drift, from the emulator's own truth.

    .venv/bin/python -m tests.extractor.drift_report SIZE SECONDS_PER_REQUEST...

One crawl per drift value against an in-process emulator of SIZE streams with no rate
limit; prints one line each. The test suite runs a small case of the same measure
(tests/extractor/test_crawl.py); this is for the bigger numbers in the extractor's notes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tests.extractor.support import FAST, client_for, crawl_under_drift
from twitch_bi.emulator import Emulator, EmulatorConfig, EmulatorServer
from twitch_bi.settings import Layout


def main(arguments: list[str]) -> None:
    size, drifts = int(arguments[0]), [float(value) for value in arguments[1:]]
    for drift in drifts:
        config = EmulatorConfig(size=size, drift_seconds_per_request=drift, ratelimit_limit=10**7)
        server = EmulatorServer(Emulator(config))
        server.start_in_thread()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            client = client_for(server, replace(FAST, read_timeout=60))
            report = crawl_under_drift(server, client, Layout(Path(folder)).ensure())
        server.shutdown()
        server.server_close()
        print(  # noqa: T201 - a command-line report
            f"size={size} drift={drift:g}s/request crawl={report.simulated_seconds:.0f}s "
            f"live_throughout={report.live_throughout} missed={report.missed} "
            f"({report.missed_share:.2%}) duplicates_removed={report.duplicates_removed} "
            f"rows={report.rows} wall={time.perf_counter() - started:.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
