"""A local Twitch Helix emulator: app tokens, `GET /helix/streams`, and Twitch's misbehaviour.

It serves the client-credentials token flow, token validation and cursor-paginated live
streams sorted by viewers, checks `Client-Id` and the bearer token like Helix does, keeps
a points bucket with `Ratelimit-*` headers, and can inject the faults Helix is known for.
Its clock is simulated: it only moves when told to (`POST /_emulator/clock`), or by
`drift_seconds_per_request` on every streams request, so runs are reproducible.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from twitch_bi.emulator.population import DEFAULT_START, LiveStreams, Population, _uniform, iso

log = structlog.get_logger(__name__)

DEFAULT_CLIENT_ID = "emulator-client-id"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - a public test credential
MAX_PAGE_SIZE = 100


@dataclass
class EmulatorConfig:
    """Everything the emulator can be told; each fault is a rate in [0, 1] or a count."""

    seed: int = 7
    size: int = 3000
    games: int = 300
    start: datetime = DEFAULT_START
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = field(default=DEFAULT_CLIENT_SECRET, repr=False)
    token_lifetime_seconds: int = 5_000_000
    # Helix gives app tokens 800 points a minute; each streams request costs one.
    ratelimit_limit: int = 800
    ratelimit_window_seconds: float = 60.0
    latency_ms: float = 0.0
    drift_seconds_per_request: float = 0.0
    # Faults, decided per request from the seed so that a run can be replayed.
    server_error_rate: float = 0.0
    too_many_requests_rate: float = 0.0
    invalid_cursor_rate: float = 0.0
    short_page_rate: float = 0.0
    empty_page_rate: float = 0.0
    restart_cursor_at_end: bool = False
    expire_token_after_requests: int = 0
    drop_connection_rate: float = 0.0
    # Every streams request after this many answers 503 (0: never): a crawl failing mid-way.
    fail_after_requests: int = 0
    # Serve these recorded pages (file names in the fixtures folder) instead of the
    # population: the first for a request without `after`, then each in turn.
    fixture_pages: tuple[str, ...] = ()

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown emulator setting {name!r}")
            current = getattr(self, name)
            if isinstance(current, datetime) and isinstance(value, str):
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            elif isinstance(current, tuple):
                value = tuple(value)
            setattr(self, name, value)


def encode_cursor(offset: int) -> str:
    """A cursor shaped like Helix's: base64url JSON with an offset, unpadded."""
    raw = json.dumps({"b": None, "a": {"Offset": offset}}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = value["a"]["Offset"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(offset, int) or offset < 0:
        return None
    return offset


def load_fixture(name: str) -> bytes:
    """The bytes of a recorded Helix response shipped with the emulator."""
    return resources.files("twitch_bi.emulator").joinpath("fixtures", name).read_bytes()


class Emulator:
    """The emulator's state: population, clock, tokens, rate-limit bucket, counters."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._lock = threading.RLock()
        self._population: Population | None = None
        self._population_key: tuple[int, int, int, datetime] | None = None
        self.now = self.config.start
        self.tokens: dict[str, tuple[str, float]] = {}
        self.requests = 0
        self.streams_requests = 0
        self.tokens_issued = 0
        self.validations = 0
        self._bucket_remaining = self.config.ratelimit_limit
        self._bucket_reset = 0.0
        self._fixture_index = 0

    # -- state shared with tests ----------------------------------------------------------

    @property
    def population(self) -> Population:
        key = (self.config.seed, self.config.size, self.config.games, self.config.start)
        with self._lock:
            if self._population is None or self._population_key != key:
                self._population = Population(seed=key[0], size=key[1], games=key[2], start=key[3])
                self._population_key = key
            return self._population

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self.now = self.now + timedelta(seconds=seconds)
            return self.now

    def set_clock(self, at: datetime) -> datetime:
        with self._lock:
            self.now = at.astimezone(UTC)
            return self.now

    def truth(self, at: datetime | None = None) -> LiveStreams:
        """The true set of live streams at `at` (default: the emulator's current time)."""
        return self.population.live_at(at or self.now)

    def configure(self, changes: dict[str, Any]) -> None:
        with self._lock:
            self.config.update(changes)
            if "start" in changes:
                self.now = self.config.start
            self._bucket_remaining = min(self._bucket_remaining, self.config.ratelimit_limit)
            self._fixture_index = 0

    def stream_records(self, live: LiveStreams, start: int, end: int) -> list[dict[str, Any]]:
        """Streams `start` to `end` of the listing as Helix returns them, in Helix's key order."""
        return self.population.records(live, start, end)

    # -- request handling, independent of HTTP plumbing ----------------------------------

    def issue_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
            if form.get("grant_type") != "client_credentials":
                return 400, {"status": 400, "message": "invalid grant type"}
            if form.get("client_id") != self.config.client_id:
                return 400, {"status": 400, "message": "invalid client"}
            if form.get("client_secret") != self.config.client_secret:
                return 403, {"status": 403, "message": "invalid client secret"}
            token = secrets.token_hex(15)
            self.tokens[token] = (
                form["client_id"],
                time.time() + self.config.token_lifetime_seconds,
            )
            self.tokens_issued += 1
            lifetime = self.config.token_lifetime_seconds
            return 200, {"access_token": token, "expires_in": lifetime, "token_type": "bearer"}

    def validate_token(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
            self.validations += 1
            token = (authorization or "").removeprefix("OAuth ").removeprefix("Bearer ").strip()
            entry = self.tokens.get(token)
            if entry is None or entry[1] < time.time():
                return 401, {"status": 401, "message": "invalid access token"}
            return 200, {
                "client_id": entry[0],
                "scopes": [],
                "expires_in": int(entry[1] - time.time()),
            }

    def revoke_all_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def _check_auth(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        client_id = headers.get("client-id")
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return 401, {
                "error": "Unauthorized",
                "status": 401,
                "message": "OAuth token is missing",
            }
        entry = self.tokens.get(authorization.removeprefix("Bearer ").strip())
        if entry is None or entry[1] < time.time():
            return 401, {"error": "Unauthorized", "status": 401, "message": "Invalid OAuth token"}
        if client_id != entry[0]:
            return 401, {
                "error": "Unauthorized",
                "status": 401,
                "message": "Client ID and OAuth token do not match",
            }
        return None

    def _ratelimit(self) -> tuple[bool, dict[str, str]]:
        """Take one point from the bucket; say whether there was one, and the headers."""
        now = time.time()
        if now >= self._bucket_reset:
            self._bucket_remaining = self.config.ratelimit_limit
            self._bucket_reset = now + self.config.ratelimit_window_seconds
        allowed = self._bucket_remaining > 0
        if allowed:
            self._bucket_remaining -= 1
        headers = {
            "Ratelimit-Limit": str(self.config.ratelimit_limit),
            "Ratelimit-Remaining": str(self._bucket_remaining),
            "Ratelimit-Reset": str(int(self._bucket_reset + 0.999)),
        }
        return allowed, headers

    def _roll(self, kind: int, rate: float) -> bool:
        if rate <= 0:
            return False
        return bool(_uniform(self.config.seed, 1000 + kind, self.streams_requests) < rate)

    def streams(
        self, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes | dict[str, Any]]:
        """Answer `GET /helix/streams`: status, extra headers, and a body."""
        with self._lock:
            self.requests += 1
            self.streams_requests += 1
            config = self.config
            denied = self._check_auth(headers)
            if denied is not None:
                return denied[0], {}, denied[1]
            if (
                config.expire_token_after_requests
                and self.streams_requests % (config.expire_token_after_requests + 1) == 0
            ):
                # The token "expires" now: revoke it so that only a new one works.
                self.tokens.pop(headers.get("authorization", "").removeprefix("Bearer "), None)
                return (
                    401,
                    {},
                    {"error": "Unauthorized", "status": 401, "message": "Invalid OAuth token"},
                )
            allowed, rate_headers = self._ratelimit()
            if not allowed or self._roll(1, config.too_many_requests_rate):
                if allowed:
                    rate_headers["Ratelimit-Remaining"] = "0"
                body = {"error": "Too Many Requests", "status": 429, "message": ""}
                return 429, rate_headers, body
            failing = (
                config.fail_after_requests and self.streams_requests > config.fail_after_requests
            )
            if failing or self._roll(2, config.server_error_rate):
                return (
                    503,
                    rate_headers,
                    {"error": "Service Unavailable", "status": 503, "message": ""},
                )

            try:
                first = int(query.get("first", "20"))
            except ValueError:
                first = -1
            if not 1 <= first <= MAX_PAGE_SIZE:
                body = {"error": "Bad Request", "status": 400, "message": "invalid first"}
                return 400, rate_headers, body

            if config.fixture_pages:
                return 200, rate_headers, self._fixture_page(query)

            after = query.get("after")
            offset = 0
            if after:
                decoded = decode_cursor(after)
                if decoded is None or self._roll(3, config.invalid_cursor_rate):
                    body = {"error": "Bad Request", "status": 400, "message": "invalid cursor"}
                    return 400, rate_headers, body
                offset = decoded

            if config.drift_seconds_per_request:
                self.now = self.now + timedelta(seconds=config.drift_seconds_per_request)
            live = self.truth(self.now)

            if self._roll(4, config.empty_page_rate) and offset < len(live):
                return (
                    200,
                    rate_headers,
                    {"data": [], "pagination": {"cursor": encode_cursor(offset)}},
                )
            size = first
            if self._roll(5, config.short_page_rate):
                size = max(1, first // 5)
            end = min(offset + size, len(live))
            data = self.stream_records(live, offset, end)
            pagination: dict[str, str] = {}
            if end < len(live):
                pagination = {"cursor": encode_cursor(end)}
            elif config.restart_cursor_at_end and data:
                # Helix sometimes hands back a cursor that starts the list over.
                pagination = {"cursor": encode_cursor(0)}
            return 200, rate_headers, {"data": data, "pagination": pagination}

    def _fixture_page(self, query: dict[str, str]) -> bytes:
        pages = self.config.fixture_pages
        if not query.get("after"):
            self._fixture_index = 0
        index = min(self._fixture_index, len(pages) - 1)
        self._fixture_index += 1
        body = load_fixture(pages[index])
        if self._fixture_index >= len(pages):
            return body
        # Chain the recorded pages: point the page's cursor at the next recording.
        page = json.loads(body)
        if not page.get("pagination", {}).get("cursor"):
            page["pagination"] = {"cursor": encode_cursor(self._fixture_index)}
            return json.dumps(page, ensure_ascii=False).encode()
        return body

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "now": iso(int(self.now.timestamp())),
                "requests": self.requests,
                "streams_requests": self.streams_requests,
                "tokens_issued": self.tokens_issued,
                "validations": self.validations,
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("emulator_request_served", line=format % args)

    def _send(
        self, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Helix-Emulator", "twitch-bi")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header carries the emulator's clock: the extractor names its snapshot
        # after the server's time, and here that is the simulated time.
        return format_datetime(self.server.emulator.now, usegmt=True)

    def _query(self) -> dict[str, str]:
        return {key: values[-1] for key, values in parse_qs(urlsplit(self.path).query).items()}

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _faulty_connection(self) -> bool:
        emulator = self.server.emulator
        if emulator._roll(6, emulator.config.drop_connection_rate):
            # Reset the connection without an answer, as a flaky network would.
            self.close_connection = True
            self.connection.close()
            return True
        return False

    def do_GET(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path.rstrip("/")
        headers = {key.lower(): value for key, value in self.headers.items()}
        if emulator.config.latency_ms:
            time.sleep(emulator.config.latency_ms / 1000)
        if path.endswith("/helix/streams"):
            if self._faulty_connection():
                return
            status, extra, body = emulator.streams(self._query(), headers)
            self._send(status, body, extra)
        elif path.endswith("/oauth2/validate"):
            status, payload = emulator.validate_token(headers.get("authorization"))
            self._send(status, payload)
        elif path == "/_emulator/truth":
            query = self._query()
            at = (
                datetime.fromisoformat(query["at"].replace("Z", "+00:00"))
                if "at" in query
                else None
            )
            live = emulator.truth(at)
            streams = [
                {
                    "id": str(int(live.stream_id[i])),
                    "viewer_count": int(live.viewers[i]),
                    "game_id": emulator.population.game_of(int(live.game[i]))[0],
                }
                for i in range(len(live))
            ]
            self._send(200, {"at": iso(int(live.at.timestamp())), "streams": streams})
        elif path == "/_emulator/stats":
            self._send(200, emulator.stats())
        else:
            self._send(404, {"error": "Not Found", "status": 404, "message": ""})

    def do_POST(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path.rstrip("/")
        body = self._read_body()
        if path.endswith("/oauth2/token"):
            form = {key: values[-1] for key, values in parse_qs(body.decode()).items()}
            form.update(self._query())
            status, payload = emulator.issue_token(form)
            self._send(status, payload)
        elif path == "/_emulator/clock":
            request = json.loads(body or b"{}")
            if "set" in request:
                emulator.set_clock(datetime.fromisoformat(request["set"].replace("Z", "+00:00")))
            emulator.advance(float(request.get("advance_seconds", 0)))
            self._send(200, emulator.stats())
        elif path == "/_emulator/config":
            try:
                emulator.configure(json.loads(body or b"{}"))
            except (ValueError, TypeError) as error:
                self._send(400, {"status": 400, "message": str(error)})
                return
            self._send(200, {"ok": True})
        elif path == "/_emulator/revoke":
            emulator.revoke_all_tokens()
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "Not Found", "status": 404, "message": ""})


class EmulatorServer(ThreadingHTTPServer):
    """The emulator on a loopback port; `port=0` picks a free one."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://{host}:{port}"

    @property
    def api_base_url(self) -> str:
        return f"{self.url}/helix"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="helix-emulator", daemon=True)
        thread.start()
        return thread
