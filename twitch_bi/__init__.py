"""twitch-bi: Twitch live-stream analytics on one small machine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("twitch-bi")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
