"""A local Twitch Helix emulator: app tokens, `GET /helix/streams`, and Twitch's misbehaviour.

It serves the client-credentials token flow, token validation and cursor-paginated live
streams sorted by viewers, checks `Client-Id` and the bearer token like Helix does, keeps
a points bucket with `Ratelimit-*` headers, and can inject the faults Helix is known for.
Its clock is simulated: it only moves when told to (`POST /_emulator/clock`), or by
`drift_seconds_per_request` on every streams request, so runs are reproducible. Faults
are drawn from the seed and the number of the request, so a run can be replayed.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import structlog

from twitch_bi.emulator.population import (
    DEFAULT_START,
    MAX_SIZE,
    LiveStreams,
    Population,
    _uniform,
    iso,
)

log = structlog.get_logger(__name__)

DEFAULT_CLIENT_ID = "emulator-client-id"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - a public test credential
MAX_PAGE_SIZE = 100
EMULATOR_HEADER = "X-Helix-Emulator"

# What each fault draws from the seed; fixed so that adding a fault never changes the others.
(
    _SERVER_ERROR,
    _TOO_MANY,
    _INVALID_CURSOR,
    _EMPTY,
    _SHORT,
    _DROP,
    _SLOW,
    _UNAUTHORIZED,
    _GARBLED,
) = range(1001, 1010)


@dataclass
class EmulatorConfig:
    """Everything the emulator can be told; each fault is a rate in [0, 1] or a count."""

    seed: int = 7
    size: int = 3000  # live streams, up to 150,000
    games: int = 300
    start: datetime = DEFAULT_START
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = field(default=DEFAULT_CLIENT_SECRET, repr=False)
    token_lifetime_seconds: int = 5_000_000
    # Helix gives app tokens 800 points a minute; each streams request costs one.
    ratelimit_limit: int = 800
    ratelimit_window_seconds: float = 60.0
    # Added to every request, as the network and Twitch's servers would.
    latency_ms: float = 0.0
    # Simulated seconds that pass with every streams request: viewers change mid-crawl.
    drift_seconds_per_request: float = 0.0
    # Faults by rate, decided per request from the seed so that a run can be replayed.
    server_error_rate: float = 0.0  # 503
    too_many_requests_rate: float = 0.0  # 429 with Ratelimit-Reset, bucket or not
    invalid_cursor_rate: float = 0.0  # 400 "invalid cursor" for a good cursor
    short_page_rate: float = 0.0  # a fifth of `first`, and still a cursor
    empty_page_rate: float = 0.0  # `data: []` mid-listing, with the same cursor again
    unauthorized_rate: float = 0.0  # 401: the token is revoked on the spot
    drop_connection_rate: float = 0.0  # the connection is reset without an answer
    slow_response_rate: float = 0.0  # the answer comes `slow_response_seconds` late
    slow_response_seconds: float = 5.0
    garbled_page_rate: float = 0.0  # a 200 whose body is a proxy's HTML error page
    # At the end of the listing, hand back a cursor instead of an empty pagination object,
    # one that starts the list over at `restart_offset` (0: the first page, whose cursor
    # the crawl never saw; 100: the cursor the first page gave, one it has seen).
    restart_cursor_at_end: bool = False
    restart_offset: int = 0
    # The listing never says it is over: the last page, and every empty page after it,
    # carries a cursor (Twitch has answered an offline query that way).
    empty_page_at_end: bool = False
    # Every N+1-th streams request finds its token expired (0: never).
    expire_token_after_requests: int = 0
    # Every streams request after this many answers 503 (0: never): a crawl failing mid-way.
    fail_after_requests: int = 0
    # Serve these recorded pages (file names in the fixtures folder) byte for byte instead
    # of the population: the first for a request without `after`, then the next for each
    # request with one, whatever its cursor says.
    fixture_pages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.check()

    def update(self, changes: dict[str, Any]) -> None:
        """Apply settings given as JSON values; nothing changes if one of them is wrong."""
        known = {f.name for f in fields(self)}
        typed: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown emulator setting {name!r}")
            current = getattr(self, name)
            if isinstance(current, datetime) and isinstance(value, str):
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            elif isinstance(current, tuple) and isinstance(value, list):
                value = tuple(value)
            elif isinstance(current, float) and type(value) is int:
                value = float(value)
            if type(value) is not type(current):
                raise ValueError(f"{name} must be a {type(current).__name__}, got {value!r}")
            typed[name] = value
        checked = replace(self, **typed)
        for name in typed:
            setattr(self, name, getattr(checked, name))

    def check(self) -> None:
        """Refuse settings the emulator cannot honour, naming the setting."""
        if not 1 <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be between 1 and {MAX_SIZE}, got {self.size}")
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name.endswith("_rate") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{spec.name} must be between 0 and 1, got {value}")
        if self.ratelimit_limit < 1 or self.ratelimit_window_seconds <= 0:
            raise ValueError("ratelimit_limit and ratelimit_window_seconds must be positive")
        for name in self.fixture_pages:
            if not _fixtures().joinpath(name).is_file():
                raise ValueError(f"no recorded page named {name!r} in the fixtures")


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


def _fixtures() -> Any:
    return resources.files("twitch_bi.emulator").joinpath("fixtures")


def load_fixture(name: str) -> bytes:
    """The bytes of a recorded Helix response shipped with the emulator."""
    data: bytes = _fixtures().joinpath(name).read_bytes()
    return data


def helix_json(body: dict[str, Any]) -> bytes:
    """JSON as Twitch writes it: UTF-8, compact, and `&`, `<`, `>` escaped (Go's encoder)."""
    return (
        orjson.dumps(body)
        .replace(b"&", b"\\u0026")
        .replace(b"<", b"\\u003c")
        .replace(b">", b"\\u003e")
    )


def _unauthorized(message: str) -> dict[str, Any]:
    return {"error": "Unauthorized", "status": 401, "message": message}


class Emulator:
    """The emulator's state: population, clock, tokens, rate-limit bucket, counters."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._lock = threading.RLock()
        self._population: Population | None = None
        self._population_key: tuple[int, int, int, datetime] | None = None
        self.now = self.config.start
        self.tokens: dict[str, tuple[str, float]] = {}
        self.issued_tokens: list[str] = []  # every token ever issued, for secret checks
        self.requests = 0  # every request to a Helix endpoint, answered or not
        self.streams_requests = 0  # streams requests that got an answer
        self.records_served = 0
        self.statuses: Counter[int] = Counter()  # answers to streams requests by status
        self.streams_arrivals: list[float] = []  # time.monotonic() of each streams request
        self.validations = 0
        self.dropped = 0  # requests answered with a connection reset
        self.slowed = 0  # requests answered `slow_response_seconds` late
        self.in_flight = 0
        self.max_in_flight = 0
        # Streams requests that arrived before the reset a 429 had announced.
        self.early_requests = 0
        self._retry_not_before = 0.0
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

    @property
    def tokens_issued(self) -> int:
        return len(self.issued_tokens)

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

    def arrive(self, *, streams: bool) -> int:
        """Count a request as it arrives; its number is what its faults are drawn from."""
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if streams:
                self.streams_arrivals.append(time.monotonic())
                if time.time() < self._retry_not_before:
                    self.early_requests += 1
            return self.requests

    def count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def roll(self, kind: int, number: int, rate: float) -> bool:
        """Whether a fault of this kind hits request `number`: a replayable draw."""
        if rate <= 0:
            return False
        return bool(_uniform(self.config.seed, kind, number) < rate)

    def issue_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if form.get("grant_type") != "client_credentials":
                return 400, {"status": 400, "message": "invalid grant type"}
            if form.get("client_id") != self.config.client_id:
                return 400, {"status": 400, "message": "invalid client"}
            if form.get("client_secret") != self.config.client_secret:
                return 403, {"status": 403, "message": "invalid client secret"}
            token = secrets.token_hex(15)
            lifetime = self.config.token_lifetime_seconds
            self.tokens[token] = (form["client_id"], time.time() + lifetime)
            self.issued_tokens.append(token)
            return 200, {"access_token": token, "expires_in": lifetime, "token_type": "bearer"}

    def validate_token(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
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

    def _check_auth(self, headers: dict[str, str]) -> dict[str, Any] | None:
        client_id = headers.get("client-id")
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return _unauthorized("OAuth token is missing")
        entry = self.tokens.get(authorization.removeprefix("Bearer ").strip())
        if entry is None or entry[1] < time.time():
            return _unauthorized("Invalid OAuth token")
        if client_id != entry[0]:
            return _unauthorized("Client ID and OAuth token do not match")
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
            # Helix sends whole epoch seconds; round up so that the bucket is full by then.
            "Ratelimit-Reset": str(int(self._bucket_reset + 0.999)),
        }
        return allowed, headers

    def streams(
        self, query: dict[str, str], headers: dict[str, str], number: int = 0
    ) -> tuple[int, dict[str, str], bytes | dict[str, Any]]:
        """Answer `GET /helix/streams`: status, extra headers, and a body."""
        with self._lock:
            status, extra, body = self._streams(query, headers, number)
            self.streams_requests += 1
            self.statuses[status] += 1
            if status == 429:
                self._retry_not_before = float(extra["Ratelimit-Reset"])
            return status, extra, body

    def _streams(
        self, query: dict[str, str], headers: dict[str, str], number: int
    ) -> tuple[int, dict[str, str], bytes | dict[str, Any]]:
        config = self.config
        denied = self._check_auth(headers)
        if denied is not None:
            return 401, {}, denied
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        expired = (
            config.expire_token_after_requests
            and (self.streams_requests + 1) % (config.expire_token_after_requests + 1) == 0
        )
        if expired or self.roll(_UNAUTHORIZED, number, config.unauthorized_rate):
            # The token expired or was revoked just now: only a new one works from here on.
            self.tokens.pop(token, None)
            return 401, {}, _unauthorized("Invalid OAuth token")

        allowed, rate_headers = self._ratelimit()
        if not allowed or self.roll(_TOO_MANY, number, config.too_many_requests_rate):
            if allowed:
                rate_headers["Ratelimit-Remaining"] = "0"
            body = {"error": "Too Many Requests", "status": 429, "message": ""}
            return 429, rate_headers, body
        failing = config.fail_after_requests and self.streams_requests >= config.fail_after_requests
        if failing or self.roll(_SERVER_ERROR, number, config.server_error_rate):
            body = {"error": "Service Unavailable", "status": 503, "message": ""}
            return 503, rate_headers, body
        if self.roll(_GARBLED, number, config.garbled_page_rate):
            return 200, rate_headers, b"<html><body><h1>502 Bad Gateway</h1></body></html>"

        try:
            first = int(query.get("first", "20"))
        except ValueError:
            first = -1
        if not 1 <= first <= MAX_PAGE_SIZE:
            return 400, rate_headers, {"error": "Bad Request", "status": 400, "message": ""}

        if config.fixture_pages:
            return 200, rate_headers, self._fixture_page(query)

        after = query.get("after")
        offset = 0
        if after:
            decoded = decode_cursor(after)
            if decoded is None or self.roll(_INVALID_CURSOR, number, config.invalid_cursor_rate):
                body = {"error": "Bad Request", "status": 400, "message": "invalid cursor"}
                return 400, rate_headers, body
            offset = decoded

        if config.drift_seconds_per_request:
            self.now = self.now + timedelta(seconds=config.drift_seconds_per_request)
        live = self.truth(self.now)

        if offset < len(live) and self.roll(_EMPTY, number, config.empty_page_rate):
            empty = {"data": [], "pagination": {"cursor": encode_cursor(offset)}}
            return 200, rate_headers, empty
        size = first
        if self.roll(_SHORT, number, config.short_page_rate):
            size = max(1, first // 5)
        end = min(offset + size, len(live))
        data = self.stream_records(live, offset, end) if offset < end else []
        self.records_served += len(data)
        pagination: dict[str, str] = {}
        if end < len(live):
            pagination = {"cursor": encode_cursor(end)}
        elif config.restart_cursor_at_end and data:
            # Helix sometimes hands back a cursor that starts the list over.
            pagination = {"cursor": encode_cursor(config.restart_offset)}
        elif config.empty_page_at_end:
            # Past the last stream: an empty page that still hands out a cursor, to itself.
            pagination = {"cursor": encode_cursor(end)}
        return 200, rate_headers, {"data": data, "pagination": pagination}

    def _fixture_page(self, query: dict[str, str]) -> bytes:
        pages = self.config.fixture_pages
        if not query.get("after"):
            self._fixture_index = 0
        index = min(self._fixture_index, len(pages) - 1)
        self._fixture_index += 1
        body = load_fixture(pages[index])
        self.records_served += len(json.loads(body)["data"])
        return body

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "now": iso(int(self.now.timestamp())),
                "requests": self.requests,
                "streams_requests": self.streams_requests,
                "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
                "records_served": self.records_served,
                "tokens_issued": self.tokens_issued,
                "validations": self.validations,
                "dropped": self.dropped,
                "slowed": self.slowed,
                "max_in_flight": self.max_in_flight,
                "early_requests": self.early_requests,
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
        payload = body if isinstance(body, bytes) else helix_json(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header(EMULATOR_HEADER, "twitch-bi")
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

    def _helix(self, path: str, answer: Any) -> None:
        """Answer a Helix or OAuth request with the network's faults around it."""
        emulator = self.server.emulator
        config = emulator.config
        number = emulator.arrive(streams=path.endswith("/helix/streams"))
        try:
            if config.latency_ms:
                time.sleep(config.latency_ms / 1000)
            if emulator.roll(_SLOW, number, config.slow_response_rate):
                emulator.count("slowed")
                time.sleep(config.slow_response_seconds)
            if emulator.roll(_DROP, number, config.drop_connection_rate):
                emulator.count("dropped")
                # Reset the connection without an answer, as a flaky network would.
                self.close_connection = True
                # SO_LINGER with a zero timeout makes close() send a RST, not a FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                return
            status, headers, body = answer(number)
            self._send(status, body, headers)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout) while this answer was late: nothing to do.
            self.close_connection = True
        finally:
            emulator.leave()

    def do_GET(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path.rstrip("/")
        headers = {key.lower(): value for key, value in self.headers.items()}
        if path.endswith("/helix/streams"):
            query = self._query()
            self._helix(path, lambda number: emulator.streams(query, headers, number))
        elif path.endswith("/oauth2/validate"):
            self._helix(
                path, lambda _: _no_headers(emulator.validate_token(headers.get("authorization")))
            )
        elif path == "/_emulator/truth":
            self._send(200, self._truth())
        elif path == "/_emulator/stats":
            self._send(200, emulator.stats())
        else:
            self._send(404, {"error": "Not Found", "status": 404, "message": ""})

    def _truth(self) -> dict[str, Any]:
        emulator = self.server.emulator
        query = self._query()
        at = datetime.fromisoformat(query["at"].replace("Z", "+00:00")) if "at" in query else None
        live = emulator.truth(at)
        games = emulator.population.games
        streams = [
            {
                "id": str(stream_id),
                "viewer_count": viewers,
                "game_id": games[game][0] if game >= 0 else "",
            }
            for stream_id, viewers, game in zip(
                live.stream_id.tolist(), live.viewers.tolist(), live.game.tolist(), strict=True
            )
        ]
        return {"at": iso(int(live.at.timestamp())), "streams": streams}

    def do_POST(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path.rstrip("/")
        body = self._read_body()
        if path.endswith("/oauth2/token"):
            form = {key: values[-1] for key, values in parse_qs(body.decode()).items()}
            form.update(self._query())
            self._helix(path, lambda _: _no_headers(emulator.issue_token(form)))
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


def _no_headers(answer: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, str], dict[str, Any]]:
    return answer[0], {}, answer[1]


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
        # A short poll interval: `shutdown()` waits for the loop to notice, once per test.
        thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="helix-emulator",
            daemon=True,
        )
        thread.start()
        return thread
