"""Settings from the environment, and the data folder's layout (shared/DESIGN.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be 0 or 1, got {value!r}")


def _env_float(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {value!r}")
    return number


def numbers_from_env(
    table: Mapping[str, str], defaults: object, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """Positive numbers from the variables of `table` (variable → field of `defaults`).

    Only the variables that are set appear in the result, typed like the default field;
    a bad value raises SettingsError naming the variable.
    """
    changes: dict[str, Any] = {}
    for variable, name in table.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        kind = int if isinstance(getattr(defaults, name), int) else float
        try:
            value = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise SettingsError(f"{variable} must be {what}, got {raw!r}") from None
        if value <= 0:
            raise SettingsError(f"{variable} must be greater than 0, got {raw!r}")
        changes[name] = value
    return changes


@dataclass(frozen=True)
class Layout:
    """Where everything lives under DATA_DIR."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def landing_streams(self) -> Path:
        return self.landing / "streams"

    @property
    def landing_tmp(self) -> Path:
        """Files are written here first: same filesystem as landing/streams, never watched."""
        return self.landing / ".incoming"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def warehouse_db(self) -> Path:
        return self.warehouse / "twitch.duckdb"

    @property
    def reporting(self) -> Path:
        return self.root / "reporting"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    def ensure(self) -> Layout:
        for path in (
            self.landing_streams,
            self.landing_tmp,
            self.quarantine,
            self.warehouse,
            self.reporting,
            self.state,
        ):
            path.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class Settings:
    """Every environment variable of shared/DESIGN.md, typed, with its default."""

    data_dir: Path = Path("data")
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    api_base_url: str = "https://api.twitch.tv/helix"
    token_url: str = "https://id.twitch.tv/oauth2/token"  # noqa: S105 - a URL, not a secret
    extract_every_minutes: float = 15.0
    healthcheck_url: str | None = field(default=None, repr=False)
    transformer_healthcheck_url: str | None = field(default=None, repr=False)
    watch_polling: bool = False
    duckdb_memory_limit: str = "2GB"
    log_format: str | None = None
    log_level: str = "info"

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            data_dir=Path(_env("DATA_DIR", "data") or "data"),
            client_id=_env("TWITCH_CLIENT_ID"),
            client_secret=_env("TWITCH_CLIENT_SECRET"),
            api_base_url=(_env("TWITCH_API_BASE_URL") or cls.api_base_url).rstrip("/"),
            token_url=_env("TWITCH_TOKEN_URL") or cls.token_url,
            extract_every_minutes=_env_float("EXTRACT_EVERY_MINUTES", 15.0),
            healthcheck_url=_env("HEALTHCHECK_URL"),
            transformer_healthcheck_url=_env("TRANSFORMER_HEALTHCHECK_URL"),
            watch_polling=_env_bool("WATCH_POLLING", False),
            duckdb_memory_limit=_env("DUCKDB_MEMORY_LIMIT", "2GB") or "2GB",
            log_format=_env("LOG_FORMAT"),
            log_level=(_env("LOG_LEVEL", "info") or "info").lower(),
        )

    @property
    def layout(self) -> Layout:
        return Layout(self.data_dir)

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or an error message."""
        return [
            value
            for value in (
                self.client_secret,
                self.healthcheck_url,
                self.transformer_healthcheck_url,
            )
            if value
        ]
