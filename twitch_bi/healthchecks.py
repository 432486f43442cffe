"""Pings to healthchecks.io-style URLs: /start, success with a summary, /fail with the error."""

from __future__ import annotations

import requests
import structlog

from twitch_bi.logs import redact

log = structlog.get_logger(__name__)


def ping(url: str | None, kind: str = "", body: str = "", timeout: float = 5.0) -> bool:
    """Send one ping; a failure is logged as a warning and never raised."""
    if not url:
        return False
    target = url.rstrip("/") + (f"/{kind}" if kind else "")
    try:
        response = requests.post(target, data=body.encode()[:10_000], timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as error:
        # The URL is a secret (it lets anyone report for this check): never log it.
        log.warning(
            "healthcheck_ping_failed", kind=kind or "success", error=redact(type(error).__name__)
        )
        return False
    return True
