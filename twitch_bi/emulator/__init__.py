"""The local Twitch Helix emulator that tests and the demo crawl instead of Twitch."""

from twitch_bi.emulator.population import LiveStreams, Population
from twitch_bi.emulator.server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    Emulator,
    EmulatorConfig,
    EmulatorServer,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "LiveStreams",
    "Population",
]
