"""The `twitch-bi` command line: one entry point for both services and their tools."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from twitch_bi import __version__
from twitch_bi.logs import configure_logging, redact
from twitch_bi.settings import Settings, SettingsError


def _prepare_dlt(settings: Settings) -> None:
    # dlt must never phone home nor write to the home folder: keep its state under data/.
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ.setdefault("DLT_DATA_DIR", str((settings.layout.state / "dlt").resolve()))


def _logging(service: str, settings: Settings) -> None:
    configure_logging(
        service,
        level=settings.log_level,
        log_format=settings.log_format,
        secrets=settings.secrets(),
    )


def cmd_extract(args: argparse.Namespace, settings: Settings) -> int:
    _logging("extractor", settings)
    _prepare_dlt(settings)
    from extractor.service import run_extract

    return run_extract(settings)


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    _logging("extractor", settings)
    _prepare_dlt(settings)
    from extractor.service import run_schedule

    return run_schedule(settings)


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    _logging("transformer", settings)
    from transformer.service import run_watch

    return run_watch(settings)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from transformer.status import format_status, health, read_status

    if args.check:
        problem = health(settings, args.check)
        if problem:
            print(f"{args.check}: unhealthy: {problem}", file=sys.stderr)
            return 1
        print(f"{args.check}: healthy")
        return 0
    status = read_status(settings)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True, default=str))
    else:
        print(format_status(status))
    return 0


def cmd_reprocess(args: argparse.Namespace, settings: Settings) -> int:
    _logging("transformer", settings)
    from transformer.control import landed_since, request_reprocess

    queued = request_reprocess(settings, files=args.files, since=args.since)
    if args.since is not None:
        named = len(landed_since(settings, args.since))
        print(
            f"queued every snapshot from {args.since} on for reprocessing "
            f"({named} landed file(s) are named from that day on; the transformer logs "
            "reprocess_requested with its count)"
        )
    if queued:
        print(f"queued {len(queued)} file(s) for reprocessing")
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    _logging("transformer", settings)
    from transformer.service import run_rebuild

    return run_rebuild(settings)


def cmd_emulator(args: argparse.Namespace, settings: Settings) -> int:
    _logging("emulator", settings)
    from twitch_bi.emulator.cli import run_emulator

    return run_emulator(args)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from twitch_bi.demo import run_demo

    return run_demo(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        snapshots=args.snapshots,
        size=args.size,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twitch-bi",
        description="Twitch live-stream analytics: Helix snapshots to Parquet, dbt on DuckDB.",
    )
    parser.add_argument("--version", action="version", version=f"twitch-bi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace, Settings], int], text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    add("extract", cmd_extract, "one crawl now; lands one file or nothing")
    add("schedule", cmd_schedule, "the extractor service: a crawl every EXTRACT_EVERY_MINUTES")
    add("watch", cmd_watch, "the transformer service")
    status = add("status", cmd_status, "processed, pending and quarantined files, last run, lag")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.add_argument(
        "--check",
        nargs="?",
        const="transformer",
        choices=["transformer", "extractor"],
        help="exit 1 if the service is unhealthy (for container health checks)",
    )
    reprocess = add("reprocess", cmd_reprocess, "queue landed files again, while watch runs too")
    reprocess.add_argument("files", nargs="*", metavar="FILE", help="landed file names or paths")
    reprocess.add_argument(
        "--since", type=date.fromisoformat, metavar="DATE", help="every snapshot from DATE on"
    )
    add("rebuild", cmd_rebuild, "rebuild warehouse and reporting from every landed file")
    emulator = add("emulator", cmd_emulator, "the local Twitch Helix emulator")
    emulator.add_argument("--port", type=int, default=8800, help="0 picks a free port")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--seed", type=int, default=7)
    emulator.add_argument("--size", type=int, default=3000, help="live streams (up to 150000)")
    emulator.add_argument(
        "--config", type=json.loads, default={}, help="JSON of emulator settings (faults, latency)"
    )
    demo = add("demo", cmd_demo, "the whole pipeline against the emulator, then a summary")
    demo.add_argument("--data-dir", help="where the demo's data goes (default: data/demo)")
    demo.add_argument("--snapshots", type=int, default=8)
    demo.add_argument("--size", type=int, default=3000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings))
    except SettingsError as error:
        print(f"twitch-bi: {redact(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `twitch-bi status | head`: the reader left; say nothing more on the way out.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
