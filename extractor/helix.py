"""Twitch Helix over dlt's REST client: app-token auth, rate limits, and the cursor's quirks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
import structlog
from dlt.common import jsonpath
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from twitch_bi.logs import register_secret

log = structlog.get_logger(__name__)

PAGE_SIZE = 100  # the most Helix gives per page
_DATA = jsonpath.compile_path("data")  # compiled once: dlt would re-parse it on every page
EMULATOR_HEADER = "X-Helix-Emulator"


class HelixError(RuntimeError):
    """A crawl could not be completed; the message says why, without secrets."""


class CredentialsError(HelixError):
    """Twitch refused the app credentials."""


@dataclass(frozen=True)
class HelixSettings:
    """How hard to try and when to give up."""

    page_size: int = PAGE_SIZE
    max_pages: int = 3000  # 300,000 streams: twice Twitch's busiest hour
    max_attempts: int = 6
    backoff_factor: float = 0.5
    max_retry_delay: float = 65.0  # a Helix bucket refills within a minute
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # A page that starts this many times above the previous page's smallest viewer
    # count is the listing starting over (Twitch does this without repeating a cursor).
    restart_factor: float = 4.0
    restart_margin: int = 50
    validate_every_seconds: float = 3600.0


def validate_url(token_url: str) -> str:
    """Twitch validates tokens at `.../oauth2/validate`, beside `.../oauth2/token`."""
    base, _, _ = token_url.rstrip("/").rpartition("/")
    return f"{base}/validate"


class HelixAppAuth(OAuth2ClientCredentials):
    """Client-credentials app token, sent with the `Client-Id` Helix wants on every request.

    The token is fetched once and reused by every crawl of a process. On a 401 the token is
    fetched again and the request retried once (`retry_unauthorized`); a second 401 means
    the credentials themselves are refused.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.last_validated: float = 0.0
        self.token_fetches = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request = super().__call__(request)
        request.headers["Client-Id"] = str(self.client_id)
        return request

    def obtain_token(self) -> None:
        try:
            super().obtain_token()
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            message = _helix_message(error.response)
            if status in (400, 401, 403):
                raise CredentialsError(
                    "Twitch refused the app credentials (TWITCH_CLIENT_ID, "
                    f"TWITCH_CLIENT_SECRET): {status} {message}"
                ) from None
            raise HelixError(f"token request failed: {status} {message}") from None
        except requests.RequestException as error:
            raise HelixError(f"token request failed: {type(error).__name__}") from None
        register_secret(str(self.access_token))
        self.token_fetches += 1
        log.debug("token_obtained", expires_at=self.token_expiry.isoformat())

    def forget_token(self) -> None:
        self.access_token = None

    def validate(self, validate_endpoint: str, timeout: float) -> bool:
        """Ask Twitch whether the token still holds (Twitch asks apps to do so hourly)."""
        if self.access_token is None:
            self.obtain_token()
        response = self.session.get(
            validate_endpoint,
            headers={"Authorization": f"OAuth {self.access_token}"},
            timeout=timeout,
        )
        self.last_validated = time.monotonic()
        if response.status_code == 401:
            log.warning("token_invalidated", reason=_helix_message(response))
            self.forget_token()
            return False
        response.raise_for_status()
        return True

    def retry_unauthorized(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Response hook: on a first 401, fetch a new token and send the request again."""
        if response.status_code != 401 or getattr(response.request, "_helix_retried", False):
            return response
        log.warning("token_refused", status=401, reason=_helix_message(response))
        self.forget_token()
        self.obtain_token()
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {self.access_token}"
        retry._helix_retried = True  # type: ignore[attr-defined]
        response.close()
        assert response.connection is not None
        again: requests.Response = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again


def _helix_message(response: requests.Response | None) -> str:
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or "")
    return ""


class RateLimiter:
    """Follows Helix's `Ratelimit-*` headers: waits for the reset instead of being refused."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep
        self.waited_seconds = 0.0
        self.limit: int | None = None

    def hook(self, response: requests.Response, **_kwargs: Any) -> requests.Response:
        remaining = response.headers.get("Ratelimit-Remaining")
        reset = response.headers.get("Ratelimit-Reset")
        if response.headers.get("Ratelimit-Limit", "").isdigit():
            self.limit = int(response.headers["Ratelimit-Limit"])
        if reset is None or not reset.isdigit():
            return response
        wait = max(0.0, int(reset) - time.time())
        if response.status_code == 429:
            # dlt's retry understands Retry-After; Helix says when the bucket refills instead.
            response.headers.setdefault("Retry-After", str(max(1, round(wait))))
            log.warning("rate_limited", wait_s=round(wait, 1), limit=self.limit)
        elif remaining == "0" and wait > 0:
            log.info("rate_limit_wait", wait_s=round(wait, 1), limit=self.limit)
            self.waited_seconds += wait
            self.sleep(wait)
        return response


def _is_invalid_cursor(response: requests.Response | None, _error: BaseException | None) -> bool:
    # Helix answers 400 for a cursor it no longer accepts; it often works on a retry.
    return (
        response is not None
        and response.status_code == 400
        and "cursor" in _helix_message(response).lower()
    )


def _check_response(response: requests.Response, **_kwargs: Any) -> requests.Response:
    """Last response hook: raise on errors, and decode a good page's JSON once."""
    if response.status_code == 401:
        raise CredentialsError(
            "Twitch refused the app credentials (TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET) "
            f"twice: {_helix_message(response)}"
        )
    if response.status_code >= 400:
        message = _helix_message(response)
        raise requests.HTTPError(
            f"{response.status_code} {message} for GET {urlsplit(response.url).path}",
            response=response,
        )
    # dlt's REST client and its cursor paginator each call `response.json()`; decoding a
    # 100-stream page twice was a fifth of a 100,000-stream crawl, so decode it once.
    body = orjson.loads(response.content)
    response.json = lambda **_: body  # type: ignore[method-assign]
    return response


class HelixCursorPaginator(JSONResponseCursorPaginator):
    """Helix's `pagination.cursor` → `after`, with the ways a listing can fail to end."""

    def __init__(self, settings: HelixSettings) -> None:
        super().__init__(cursor_path="pagination.cursor", cursor_param="after")
        self.settings = settings
        self.pages = 0
        self.seen_cursors: set[str] = set()
        self.stop_reason = "end_of_listing"
        self.last_page_min_viewers: int | None = None
        self.discard_page = False

    def update_state(self, response: requests.Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        self.pages += 1
        self.discard_page = False
        cursor = self._next_reference
        page = data or []
        viewers = [row.get("viewer_count") or 0 for row in page if isinstance(row, dict)]

        if not page:
            self._stop("empty_page")
        elif self._restarted(viewers):
            self.discard_page = True
            self._stop("listing_restarted")
        elif cursor is not None and cursor in self.seen_cursors:
            self._stop("repeated_cursor")
        elif cursor is not None and self.pages >= self.settings.max_pages:
            self._stop("max_pages")
        if cursor is not None:
            self.seen_cursors.add(cursor)
        if viewers:
            self.last_page_min_viewers = min(viewers)

    def _restarted(self, viewers: list[int]) -> bool:
        previous = self.last_page_min_viewers
        if previous is None or not viewers:
            return False
        return viewers[0] > previous * self.settings.restart_factor + self.settings.restart_margin

    def _stop(self, reason: str) -> None:
        if self._next_reference is not None or reason != "empty_page":
            self.stop_reason = reason
        else:
            self.stop_reason = "end_of_listing"
        self._next_reference = None


@dataclass
class Page:
    """One page of streams, with what the crawl needs to know about it."""

    number: int
    streams: list[dict[str, Any]]
    server_time: datetime | None
    from_emulator: bool


@dataclass
class HelixClient:
    """A Helix client that lives as long as the process, so its token is reused."""

    api_base_url: str
    client_id: str
    client_secret: str
    token_url: str
    settings: HelixSettings = field(default_factory=HelixSettings)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        register_secret(self.client_secret)
        session = Client(
            request_timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            raise_for_status=False,
            request_max_attempts=self.settings.max_attempts,
            request_backoff_factor=self.settings.backoff_factor,
            request_max_retry_delay=self.settings.max_retry_delay,
            retry_condition=_is_invalid_cursor,
            respect_retry_after_header=True,
        ).session
        self.auth = HelixAppAuth(
            access_token_url=self.token_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            session=session,
        )
        self.rate_limiter = RateLimiter(self.sleep)
        self.rest = RESTClient(base_url=self.api_base_url, auth=self.auth, session=session)
        self._lock = threading.Lock()

    def validate_if_due(self) -> None:
        """Validate the token at start and then about hourly."""
        due = time.monotonic() - self.auth.last_validated >= self.settings.validate_every_seconds
        if self.auth.last_validated == 0.0 or due:
            self.auth.validate(validate_url(self.token_url), self.settings.read_timeout)
            log.debug("token_validated")

    def pages(self) -> Iterator[Page]:
        """Every page of `GET /streams`, following the cursor until the listing ends."""
        paginator = HelixCursorPaginator(self.settings)
        self.paginator = paginator
        hooks: dict[str, Any] = {
            "response": [
                self.rate_limiter.hook,
                self.auth.retry_unauthorized,
                _check_response,
            ]
        }
        pages = self.rest.paginate(
            "streams",
            params={"first": self.settings.page_size},
            paginator=paginator,
            data_selector=_DATA,
            hooks=hooks,
        )
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except requests.RequestException as error:
                raise HelixError(
                    f"GET /streams failed after {self.settings.max_attempts} attempts "
                    f"on page {paginator.pages + 1}: {error}"
                ) from None
            response = page.response
            if paginator.discard_page:
                log.warning("page_discarded", page=paginator.pages, reason=paginator.stop_reason)
                continue
            yield Page(
                number=paginator.pages,
                streams=list(page),
                server_time=_server_time(response),
                from_emulator=EMULATOR_HEADER in response.headers,
            )

    @property
    def stop_reason(self) -> str:
        return self.paginator.stop_reason


def _server_time(response: requests.Response) -> datetime | None:
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None
