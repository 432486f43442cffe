"""Twitch Helix over dlt's REST client: app-token auth, rate limits, and the cursor's quirks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
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
from tenacity import RetryCallState

from twitch_bi.logs import register_secret
from twitch_bi.settings import numbers_from_env

log = structlog.get_logger(__name__)

PAGE_SIZE = 100  # the most Helix gives per page
_DATA = jsonpath.compile_path("data")  # compiled once: dlt would re-parse it on every page
EMULATOR_HEADER = "X-Helix-Emulator"


class HelixError(RuntimeError):
    """A crawl could not be completed; the message says why, without secrets."""


class CredentialsError(HelixError):
    """Twitch refused the app credentials."""


class MalformedResponse(requests.RequestException):
    """A 200 whose body is not JSON (a proxy's error page, a cut-off body): worth a retry."""


class _Unauthorized(requests.HTTPError):
    """A first 401: the token was fetched again and the request is to be sent once more."""


# The environment variables that tune a crawl, and the HelixSettings field each sets.
ENVIRONMENT = {
    "EXTRACT_MAX_PAGES": "max_pages",
    "EXTRACT_MAX_ATTEMPTS": "max_attempts",
    "EXTRACT_BACKOFF_SECONDS": "backoff_factor",
    "EXTRACT_TIMEOUT_SECONDS": "read_timeout",
}


@dataclass(frozen=True)
class HelixSettings:
    """How hard to try and when to give up."""

    page_size: int = PAGE_SIZE
    # 300,000 streams: twice Twitch's busiest hour. A listing that goes on longer is a
    # cursor going round in circles, so the crawl fails rather than land a loop's output.
    max_pages: int = 3000
    # Attempts per request, shared by 5xx, 429, resets, timeouts and `400 invalid cursor`.
    max_attempts: int = 6
    backoff_factor: float = 0.5  # seconds before the first retry, doubling after each
    max_retry_delay: float = 65.0  # a Helix bucket refills within a minute
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # A page that starts this many times above the previous page's smallest viewer
    # count is the listing starting over (Twitch does this without repeating a cursor).
    restart_factor: float = 4.0
    restart_margin: int = 50
    # Empty pages that still carry a cursor are followed this many times in a row before
    # they are taken as the end of the listing (Twitch ends some listings that way).
    empty_page_retries: int = 2
    validate_every_seconds: float = 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> HelixSettings:
        """The defaults, changed by any `EXTRACT_*` variable that is set."""
        return replace(cls(), **numbers_from_env(ENVIRONMENT, cls(), environ))


def validate_url(token_url: str) -> str:
    """Twitch validates tokens at `.../oauth2/validate`, beside `.../oauth2/token`."""
    base, _, _ = token_url.rstrip("/").rpartition("/")
    return f"{base}/validate"


class HelixAppAuth(OAuth2ClientCredentials):
    """Client-credentials app token, sent with the `Client-Id` Helix wants on every request.

    The token is fetched once and reused by every crawl of a process. On a 401 the token is
    fetched again and the request sent once more; a second 401 for the same request means
    the credentials themselves are refused.
    """

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
        except ValueError:
            raise HelixError("token request failed: the answer is not JSON") from None
        register_secret(str(self.access_token))
        log.debug("token_obtained", expires_at=self.token_expiry.isoformat())

    def forget_token(self) -> None:
        self.access_token = None

    def refresh_on_unauthorized(
        self, response: requests.Response, **_kwargs: Any
    ) -> requests.Response:
        """Response hook: on a request's first 401, fetch a new token and put it on the request.

        The retrying session then sends the same request again (see `_should_retry`).
        """
        if response.status_code != 401:
            return response
        request = response.request
        refusals = getattr(request, "_helix_401s", 0) + 1
        request._helix_401s = refusals  # type: ignore[attr-defined]
        if refusals == 1:
            log.warning("token_refused", status=401, reason=_helix_message(response))
            self.forget_token()
            self.obtain_token()
            request.headers["Authorization"] = f"Bearer {self.access_token}"
        return response


def _helix_message(response: requests.Response | None) -> str:
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict):
        # One line, whatever Twitch wrote: it ends up in a one-line error.
        return " ".join(str(body.get("message") or body.get("error") or "").split())
    return ""


class RateLimiter:
    """Follows Helix's `Ratelimit-*` headers: waits for the reset instead of being refused.

    Helix says how many points the bucket holds (`Ratelimit-Limit`), how many are left, and
    when it is full again (`Ratelimit-Reset`, epoch seconds); nothing here assumes a size.
    """

    def __init__(self, max_wait: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_wait = max_wait
        self.sleep = sleep
        self.limit: int | None = None
        self.empty_until: float | None = None
        self.waits = 0

    def hook(self, response: requests.Response, **_kwargs: Any) -> requests.Response:
        """Response hook: note an empty bucket, and turn a 429's reset into a Retry-After."""
        headers = response.headers
        if headers.get("Ratelimit-Limit", "").isdigit():
            self.limit = int(headers["Ratelimit-Limit"])
        reset = headers.get("Ratelimit-Reset", "")
        if not reset.isdigit():
            return response
        if response.status_code == 429:
            # dlt's retry waits as long as Retry-After says; Helix says when the bucket is
            # full instead. An HTTP date keeps the wait exact (Retry-After seconds are whole).
            headers.setdefault("Retry-After", formatdate(int(reset), usegmt=True))
            log.warning("rate_limited", reset_in_s=round(int(reset) - time.time(), 2))
        elif headers.get("Ratelimit-Remaining") == "0":
            self.empty_until = float(reset)
        return response

    def wait_for_points(self) -> None:
        """Before the next request: if the bucket is empty, sleep until Helix refills it."""
        if self.empty_until is None:
            return
        wait = min(max(0.0, self.empty_until - time.time()), self.max_wait)
        self.empty_until = None
        if wait > 0:
            log.debug("rate_limit_waited", wait_s=round(wait, 2), limit=self.limit)
            self.waits += 1
            self.sleep(wait)


def _should_retry(response: requests.Response | None, error: BaseException | None) -> bool:
    """What dlt's retrying session retries besides 429, 5xx, resets and timeouts."""
    if isinstance(error, _Unauthorized | MalformedResponse):
        return True
    # Helix answers 400 for a cursor it no longer accepts; it often works on a retry.
    return (
        response is not None
        and response.status_code == 400
        and "cursor" in _helix_message(response).lower()
    )


def _check_response(response: requests.Response, **_kwargs: Any) -> requests.Response:
    """Last response hook: raise on errors, and decode a good page's JSON once."""
    path = urlsplit(response.url).path
    if response.status_code == 401:
        if getattr(response.request, "_helix_401s", 0) <= 1:
            raise _Unauthorized(f"401 for GET {path}; a new token was fetched", response=response)
        raise CredentialsError(
            "Twitch refused the app credentials (TWITCH_CLIENT_ID, TWITCH_CLIENT_SECRET): "
            f"401 {_helix_message(response)} for GET {path} with a token fetched just before"
        )
    if response.status_code >= 400:
        message = _helix_message(response)
        raise requests.HTTPError(
            f"{response.status_code} {message} for GET {path}".replace("  ", " "),
            response=response,
        )
    # dlt's REST client and its cursor paginator each call `response.json()`; decoding a
    # 100-stream page twice was a fifth of a 100,000-stream crawl, so decode it once.
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise MalformedResponse(
            f"{response.status_code} for GET {path} is not JSON", response=response
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        # Taken as an empty page, this would end the listing early: refuse it instead.
        raise MalformedResponse(f"200 for GET {path} has no list of data", response=response)
    response.json = lambda **_: body  # type: ignore[method-assign]
    return response


class HelixCursorPaginator(JSONResponseCursorPaginator):
    """Helix's `pagination.cursor` → `after`, with the ways a listing can fail to end.

    The listing ends when the pagination object is empty. It also ends, safely, on empty
    pages that keep coming, on a cursor already followed in this crawl, and on a page that
    starts over at the top (its page is dropped). Past `max_pages` the crawl is refused.
    """

    def __init__(self, settings: HelixSettings) -> None:
        super().__init__(cursor_path="pagination.cursor", cursor_param="after")
        self.settings = settings
        self.pages = 0
        self.seen_cursors: set[str] = set()
        self.stop_reason: str | None = None
        self.last_page_min_viewers: int | None = None
        self.empty_in_a_row = 0
        self.discard_page = False

    def update_state(self, response: requests.Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        self.pages += 1
        self.discard_page = False
        cursor = self._next_reference
        page = data or []

        if not page:
            # An empty page with a cursor is followed: mid-listing it is a hiccup, and the
            # cursor it repeats is the one just asked for. Several in a row end the listing.
            self.empty_in_a_row += 1
            if cursor is None:
                self._stop("end_of_listing")
            elif self.empty_in_a_row > self.settings.empty_page_retries:
                self._stop("empty_page")
            elif self.pages >= self.settings.max_pages:
                self._stop("max_pages")
            return

        self.empty_in_a_row = 0
        viewers = [
            row["viewer_count"]
            for row in page
            if isinstance(row, dict) and isinstance(row.get("viewer_count"), int)
        ]
        if self._restarted(viewers):
            self.discard_page = True
            self._stop("listing_restarted")
            return
        if viewers:
            self.last_page_min_viewers = min(viewers)
        if cursor is None:
            self._stop("end_of_listing")
        elif cursor in self.seen_cursors:
            self._stop("repeated_cursor")
        elif self.pages >= self.settings.max_pages:
            self._stop("max_pages")
        else:
            self.seen_cursors.add(cursor)

    def _restarted(self, viewers: list[int]) -> bool:
        previous = self.last_page_min_viewers
        if previous is None or not viewers:
            return False
        return viewers[0] > previous * self.settings.restart_factor + self.settings.restart_margin

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason
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
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        register_secret(self.client_secret)
        session = Client(
            request_timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            raise_for_status=False,
            request_max_attempts=self.settings.max_attempts,
            request_backoff_factor=self.settings.backoff_factor,
            request_max_retry_delay=self.settings.max_retry_delay,
            retry_condition=_should_retry,
            respect_retry_after_header=True,
        ).session
        # requests reads proxies and the CA bundle from the environment again for every
        # request, a tenth of a 1,000-page crawl's time: let it read them once, here.
        environment = session.merge_environment_settings(self.api_base_url, {}, None, None, None)
        session.proxies.update(environment["proxies"])
        session.verify = environment["verify"]
        session.trust_env = False
        # dlt's Client wraps `send` with tenacity but takes no callback; its Retrying object
        # is on the wrapper, and copies of it (one per request) keep what is set here.
        session.send.retry.before_sleep = self._log_retry  # type: ignore[attr-defined]
        self.auth = HelixAppAuth(
            access_token_url=self.token_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            session=session,
        )
        self.session = session
        self.rate_limiter = RateLimiter(self.settings.max_retry_delay, self.sleep)
        self.rest = RESTClient(base_url=self.api_base_url, auth=self.auth, session=session)
        self.retries = 0
        self.last_validated: float | None = None
        self.paginator = HelixCursorPaginator(self.settings)

    def _log_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        reason: str
        if isinstance(error, requests.HTTPError) and error.response is not None:
            reason = str(error.response.status_code)
        elif error is not None:
            reason = type(error).__name__
        else:
            reason = "unknown"
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "request_retried", reason=reason, attempt=state.attempt_number, wait_s=round(wait, 2)
        )

    def check_credentials(self) -> None:
        """Fetch a token now (raising CredentialsError if Twitch refuses) and validate it."""
        if self.auth.access_token is None:
            self.auth.obtain_token()
        self.validate()

    def validate(self) -> bool:
        """Ask Twitch whether the token still holds, as Twitch asks apps to do hourly.

        A token Twitch no longer knows is dropped, so the next request fetches a new one; a
        validation that cannot be done (5xx, timeout) is a warning and nothing more.
        """
        if self.auth.access_token is None:
            self.auth.obtain_token()
        self.last_validated = self.clock()
        try:
            response = self.session.get(
                validate_url(self.token_url),
                headers={"Authorization": f"OAuth {self.auth.access_token}"},
            )
        except requests.RequestException as error:
            log.warning("token_validation_failed", error=type(error).__name__)
            return False
        if response.status_code == 401:
            log.warning("token_invalidated", reason=_helix_message(response))
            self.auth.forget_token()
            return False
        if response.status_code != 200:
            log.warning("token_validation_failed", status=response.status_code)
            return False
        log.debug("token_validated")
        return True

    def validate_if_due(self) -> None:
        """Validate the token at start and then about hourly."""
        last = self.last_validated
        if last is None or self.clock() - last >= self.settings.validate_every_seconds:
            self.validate()

    def pages(self) -> Iterator[Page]:
        """Every page of `GET /streams`, following the cursor until the listing ends."""
        paginator = HelixCursorPaginator(self.settings)
        self.paginator = paginator
        hooks: dict[str, Any] = {
            "response": [
                self.rate_limiter.hook,
                self.auth.refresh_on_unauthorized,
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
            if paginator.has_next_page:
                self.rate_limiter.wait_for_points()
            try:
                page = next(pages)
            except StopIteration:
                return
            except requests.RequestException as error:
                attempts = self.session.send.statistics.get("attempt_number", 1)  # type: ignore[attr-defined]
                raise HelixError(
                    f"GET /streams failed after {attempts} attempt{'s' if attempts > 1 else ''} "
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
        return self.paginator.stop_reason or "unfinished"


def _server_time(response: requests.Response) -> datetime | None:
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None
