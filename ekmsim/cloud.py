"""Simulated EKM Push cloud: Account, Realtime and Summary APIs on one port.

* Account API: ``/account/api/account``, ``/account/api/gateway``;
* Realtime: ``/readMeter`` (the 1,000 latest reads of each meter);
* Summary (ekmsim.summary): legacy ``/summary``, V2 ``/summary/api/v2/meter``,
  ``/summary/api/v2/firstlast`` and ``/summary/api/v2/gstat`` (paths of the last two
  inferred). Summary rows come from the same register functions as the Realtime reads;
* control (ekmsim.control): Gateway Settings ``/sendCommand``, Trigger API ``/api/trigger``.
"""

# The shapes follow shared/docs/ekm-cloud-api.md §2, §3, §5 and §8. Faults (latency, HTTP
# errors, malformed bodies, rate limits, bad reads, no Summary V2) are changed at runtime
# through ``CloudSimulator.faults`` or over HTTP under ``/_sim/`` (see ADMIN_HELP).
# Every API shows a key what Fleet says it may see: an account key everything, a gateway
# key its gateway and meters, a meter key its meter only (no gateway; key_type "meter").

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
import contextlib
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, tzinfo
import json
import math
import random
import time
from typing import Any, Final, Self
import zlib
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from .control import ADMIN_HELP as CONTROL_HELP, ControlApi
from .fleet import Fleet, Read, SimGateway, SimMeter
from .summary import (
    NoData,
    SummaryError,
    first_last,
    gateway_status,
    parse_addresses,
    parse_summary_query,
    parse_zone,
    summary_rows,
)

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_COUNT: Final = 1000
ALWAYS_FIELDS: Final = ("Good", "Date", "Time", "Time_Stamp_UTC_ms")
READ_METER_PARAMS: Final = frozenset(
    {"key", "meters", "fmt", "format", "cnt", "count", "fields", "since", "until",
     "timezone", "tz", "ver", "status", "start_date", "end_date"}
)  # fmt: skip
MALFORMED_KINDS: Final = (
    "not_json",  # an HTML page with HTTP 200
    "truncated",  # the real answer cut in half
    "wrong_shape",  # a JSON array
    "readset_not_list",  # {"readMeter": {"ReadSet": {...}}}
    "empty",  # no body at all
    "error_body",  # {"error": "..."} with HTTP 200
    "auth_error_body",  # {"status_code": 401, "error": "Invalid key"} with HTTP 200
)
ENDPOINTS: Final = (
    "readMeter", "account", "gateway", "summary", "summary_v2", "firstlast", "gstat",
    "sendCommand", "trigger",
)  # fmt: skip
ERROR_STATUSES: Final = (400, 401, 403, 404, 429, 500, 502, 503, 504)
# The Push3 LAN API (ekmsim.lan): the lan_* faults below.
LAN_MALFORMED_KINDS: Final = (
    "not_json",  # an HTML page with HTTP 200
    "truncated",  # the real answer cut in half
    "wrong_shape",  # a JSON array
    "bad_address",  # a top-level key that is not a 12-digit address
    "not_list",  # a meter's value is an object, not a list of reads
    "bad_reads",  # malformed reads next to the good ones (a client keeps the good ones)
    "empty",  # no body at all
)
LAN_ERROR_STATUSES: Final = (429, 500, 502, 503, 504)  # 5xx with a plain-text body

# --- EKM status codes ----------------------------------------------------------------------
# EKM documents the codes 1000-1300 and their messages but not the JSON that carries them
# (ekm-cloud-api.md §8.1). This simulator's guess lives here and nowhere else.
STATUS_HTTP: Final[Mapping[int, int]] = {
    1000: 200, 1001: 200, 1002: 200, 1003: 200, 1004: 400,
    1100: 400, 1101: 400, 1102: 400, 1103: 400, 1200: 400, 1300: 500,
}  # fmt: skip
STATUS_MESSAGES: Final[Mapping[int, str]] = {
    1000: "There is not data for: {meters}",
    1001: "There is not data for: {meters} between {start} and {end}",
    1002: "There is not data for: {meters} This meter first reported on: {first}",
    1003: "There is not data for: {meters} This meter last reported on: {last}",
    1004: "Timezone is not supported for this date range request",
    1100: "All invalid query requests",
    1101: "Invalid format",
    1102: "Invalid value",
    1103: "Invalid parameter",
    1200: "Found invalid meter: {meter} for key: {key}",
    1300: (
        "Oops! It looks like there was an unexpected error. Try checking your query for "
        "issues or hold tight while we see what we can do. This error has been reported."
    ),
}


def status_response(code: int, **details: str) -> web.Response:
    """Build EKM's status-code answer (the one place that knows its envelope)."""
    message = STATUS_MESSAGES[code]
    with contextlib.suppress(KeyError):
        message = message.format(**details)
    return web.json_response(
        {"status_code": code, "message": message}, status=STATUS_HTTP.get(code, 400)
    )


def error_response(status: int, retry_after: str | None = None) -> web.Response:
    """Build a plain HTTP error as a real server (or a proxy in front of it) sends it."""
    headers = {"Retry-After": retry_after} if status == 429 and retry_after else None
    if status == 401:
        return web.json_response({"error": "Unauthorized - key required"}, status=401)
    if status == 403:
        return web.json_response({"error": "Unauthorized - invalid key"}, status=403)
    if status == 429:
        return web.json_response({"error": "Too Many Requests"}, status=429, headers=headers)
    if status == 404:
        return web.json_response({"error": "Not Found"}, status=404)
    if status == 400:
        return web.json_response({"error": "Bad Request"}, status=400)
    return web.Response(
        status=status,
        text=f"<html><body><h1>{status} Server Error</h1></body></html>",
        content_type="text/html",
    )


class _BadParam(Exception):
    """A query parameter was rejected with an EKM status code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(kw_only=True)
class Faults:
    """Fault knobs; change them at any time (Python or ``POST /_sim/faults``)."""

    latency_s: float = 0.0  # delay before every API answer
    error_rates: dict[int, float] = field(default_factory=dict)  # HTTP status -> probability
    fail_next: list[int] = field(default_factory=list)  # statuses for the next requests
    retry_after: str | None = "30"  # Retry-After of injected 429s: seconds or an HTTP-date
    malformed: str | None = None  # one of MALFORMED_KINDS
    malformed_rate: float = 1.0
    force_status: int | None = None  # answer every readMeter with this EKM status code
    bad_read_rate: float = 0.0  # share of reads served as Good: 0 with PERR.NR
    numbers_as_json: bool = False  # serve measurements as JSON numbers, not strings
    summary_v2: bool = True  # False: a server without Summary V2 (404 on /summary/api/v2/...)
    # Reports the Summary API knows (None: all); others get its plain-text Error answer.
    summary_reports: list[str] | None = None
    extra_fields: dict[str, Any] = field(default_factory=dict)  # added to every good read
    deep_meter_lists: bool = True  # deep account answers include each gateway's meters
    rate_limit: int | None = None  # API requests allowed per key per rate_window_s
    rate_window_s: float = 60.0
    only_endpoints: list[str] | None = None  # faults hit only these ENDPOINTS (None: all)
    account_extra: dict[str, Any] = field(default_factory=dict)  # merged into account JSON
    # Settings API: real seconds until the gateway applies a command (0 = next loop
    # iteration); drop_commands: accept (200) but never apply; command_token_required:
    # sendCommand needs a bearer token (401 without).
    command_delay_s: float = 2.0
    drop_commands: bool = False
    command_token_required: bool = False
    # Push3 LAN API (ekmsim.lan), every gateway: lan_wrong_key refuses every key (HTTP 500
    # with HTML, as a Push3 answers a wrong key); lan_latency_s delays each answer;
    # lan_fail_next / lan_error_rates answer LAN_ERROR_STATUSES (429 with retry_after);
    # lan_malformed (LAN_MALFORMED_KINDS) spoils the body; lan_drop closes each connection
    # unanswered; lan_stale_meters stop answering their gateway, which keeps serving their
    # last read with its old timestamp.
    lan_wrong_key: bool = False
    lan_latency_s: float = 0.0
    lan_fail_next: list[int] = field(default_factory=list)
    lan_error_rates: dict[int, float] = field(default_factory=dict)
    lan_malformed: str | None = None
    lan_drop: bool = False
    lan_stale_meters: list[str] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def to_json(self) -> dict[str, Any]:
        """Return the knobs as JSON-able data."""
        data = asdict(self)
        data["error_rates"] = {str(k): v for k, v in self.error_rates.items()}
        data["lan_error_rates"] = {str(k): v for k, v in self.lan_error_rates.items()}
        return data

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update (from JSON); raises ValueError for a bad knob."""
        names = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"Unknown fault {name!r}")
            if name == "error_rates":
                rates = {int(k): float(v) for k, v in dict(value).items()}
                if any(k not in ERROR_STATUSES or not 0 <= v <= 1 for k, v in rates.items()):
                    raise ValueError(f"error_rates: statuses {ERROR_STATUSES}, rates 0..1")
                value = rates  # noqa: PLW2901
            elif name == "fail_next":
                statuses = [int(v) for v in value]
                if any(v not in ERROR_STATUSES for v in statuses):
                    raise ValueError(f"fail_next: statuses {ERROR_STATUSES}")
                value = statuses  # noqa: PLW2901
            elif name == "malformed" and value is not None and value not in MALFORMED_KINDS:
                raise ValueError(f"malformed: one of {MALFORMED_KINDS} or null")
            elif name == "force_status" and value is not None and value not in STATUS_HTTP:
                raise ValueError(f"force_status: one of {sorted(STATUS_HTTP)} or null")
            elif (
                name == "only_endpoints"
                and value is not None
                and (not isinstance(value, list) or any(v not in ENDPOINTS for v in value))
            ):
                raise ValueError(f"only_endpoints: a list of {ENDPOINTS} or null")
            elif name == "command_delay_s" and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise ValueError("command_delay_s: seconds >= 0")
            elif name in ("drop_commands", "command_token_required") and not isinstance(
                value, bool
            ):
                raise ValueError(f"{name}: true or false")
            elif name.startswith("lan_"):
                value = _lan_fault(name, value)  # noqa: PLW2901
            setattr(self, name, value)
        if "seed" in changes:
            self.rng = random.Random(self.seed)

    def reset(self) -> None:
        """Back to a healthy server."""
        self.update(asdict(Faults()))


def _lan_fault(name: str, value: Any) -> Any:
    """A checked value of a lan_* fault; raises ValueError."""
    if name in ("lan_wrong_key", "lan_drop"):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: true or false")
    elif name == "lan_latency_s":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError("lan_latency_s: seconds >= 0")
    elif name == "lan_fail_next":
        value = [int(v) for v in value]
        if any(v not in LAN_ERROR_STATUSES for v in value):
            raise ValueError(f"lan_fail_next: statuses {LAN_ERROR_STATUSES}")
    elif name == "lan_error_rates":
        value = {int(k): float(v) for k, v in dict(value).items()}
        if any(k not in LAN_ERROR_STATUSES or not 0 <= v <= 1 for k, v in value.items()):
            raise ValueError(f"lan_error_rates: statuses {LAN_ERROR_STATUSES}, rates 0..1")
    elif name == "lan_malformed":
        if value is not None and value not in LAN_MALFORMED_KINDS:
            raise ValueError(f"lan_malformed: one of {LAN_MALFORMED_KINDS} or null")
    elif name == "lan_stale_meters":
        if not isinstance(value, list) or not all(
            isinstance(a, str | int) and str(a).isdigit() and len(str(a)) <= 12 for a in value
        ):
            raise ValueError("lan_stale_meters: a list of meter addresses")
        value = [str(a).zfill(12) for a in value]
    return value


class CloudSimulator:
    """The EKM cloud over real HTTP; ``await start()`` returns its base URL."""

    def __init__(self, fleet: Fleet | None = None, *, faults: Faults | None = None) -> None:
        self.fleet = fleet if fleet is not None else Fleet.demo()
        self.faults = faults if faults is not None else Faults()
        self.requests: Counter[str] = Counter()  # API requests per endpoint
        # (endpoint, query without the key) of recent API requests, oldest first.
        self.request_log: deque[tuple[str, dict[str, str]]] = deque(maxlen=1000)
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._windows: dict[str, tuple[float, int]] = {}
        self.control = ControlApi(self)  # Settings and Trigger APIs
        self.app = self._build_app()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = any free port); returns the base URL."""
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        """Stop serving (pending slow answers are released, pending commands cancelled)."""
        self._stopping.set()
        self.control.stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reset_counts(self) -> None:
        """Forget the request counts and log."""
        self.requests.clear()
        self.request_log.clear()

    # --- app ---------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        api: list[tuple[str, str, Handler]] = [
            ("/readMeter", "readMeter", self._read_meter),
            ("/readmeter", "readMeter", self._read_meter),
            ("/account/api/account", "account", self._account),
            ("/account/api/gateway", "gateway", self._gateway),
            ("/summary", "summary", self._summary),
            ("/summary/api/v2/meter", "summary_v2", self._summary_v2),
            ("/summary/api/v2/firstlast", "firstlast", self._firstlast),
            ("/summary/api/v2/gstat", "gstat", self._gstat),
        ]
        for path, name, handler in api:
            app.router.add_get(path, self._api(name, handler))
        app.router.add_get("/summary/api/v2/{tail:.*}", self._summary_v2_unknown)
        app.router.add_get("/_sim/state", self._admin_state)
        app.router.add_get("/_sim/faults", self._admin_faults)
        app.router.add_post("/_sim/faults", self._admin_faults)
        app.router.add_delete("/_sim/faults", self._admin_faults)
        app.router.add_get("/_sim/requests", self._admin_requests)
        app.router.add_delete("/_sim/requests", self._admin_requests)
        app.router.add_post("/_sim/keys/revoke", self._admin_keys)
        app.router.add_post("/_sim/keys/restore", self._admin_keys)
        app.router.add_get("/_sim/meters", self._admin_meters)
        app.router.add_post("/_sim/meters/{address}", self._admin_meter)
        app.router.add_post("/_sim/gateways/{mac}", self._admin_gateway)
        app.router.add_post("/_sim/advance", self._admin_advance)
        app.router.add_post("/_sim/control/{name}", self._admin_control)
        self.control.add_routes(app, self._api)
        return app

    def _api(self, name: str, handler: Handler) -> Handler:
        """Wrap an API handler with counting and fault injection."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.requests[name] += 1
            self.request_log.append((name, {k: v for k, v in request.query.items() if k != "key"}))
            faults = self.faults
            if faults.only_endpoints is not None and name not in faults.only_endpoints:
                return await handler(request)
            if faults.latency_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), faults.latency_s)
            if faults.fail_next:
                return error_response(faults.fail_next.pop(0), faults.retry_after)
            for status, rate in faults.error_rates.items():
                if rate > 0 and faults.rng.random() < rate:
                    return error_response(status, faults.retry_after)
            limited = self._rate_limited(request.query.get("key", ""))
            if limited is not None:
                return error_response(429, str(limited))
            response = await handler(request)
            if (
                faults.malformed is not None
                and isinstance(response, web.Response)
                and response.status == 200
                and faults.rng.random() < faults.malformed_rate
            ):
                return _malform(faults.malformed, response)
            return response

        return wrapped

    def _rate_limited(self, key: str) -> int | None:
        """Seconds to wait if the key is over its limit, else None (and count it)."""
        limit = self.faults.rate_limit
        if limit is None:
            return None
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.faults.rate_window_s:
            start, count = now, 0
        if count >= limit:
            return max(1, math.ceil(self.faults.rate_window_s - (now - start)))
        self._windows[key] = (start, count + 1)
        return None

    def _auth(self, key: str) -> web.Response | None:
        if not key:
            return error_response(401)
        if self.fleet.key_type(key) is None:
            return error_response(403)
        return None

    # --- Account API -------------------------------------------------------------------------

    async def _account(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        key = query.get("key", "")
        if (denied := self._auth(key)) is not None:
            return denied
        fleet = self.fleet
        deep = _truthy(query.get("deep"))
        gateways = []
        for gw in fleet.gateways_for_key(key):
            item: dict[str, Any] = {"mac_address": gw.mac}
            if deep:
                item["name"] = gw.name
                if self.faults.deep_meter_lists:
                    item["meters"] = [{"address": a} for a in gw.meters]
            gateways.append(item)
        body = {
            "key": key,
            "key_type": fleet.key_type(key),
            "host": fleet.host,
            "gateways": gateways,
            "meters": [_account_meter(fleet.meters[a]) for a in fleet.meters_for_key(key) or ()],
            "metersets": [],
        } | self.faults.account_extra
        return _json(body, query.get("indent"))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        key = query.get("key", "")
        if (denied := self._auth(key)) is not None:
            return denied
        visible = {gw.mac: gw for gw in self.fleet.gateways_for_key(key)}
        ids = [i.lower() for raw in query.getall("id", []) for i in raw.split("~") if i]
        if any(i not in visible for i in ids):
            return status_response(1102)
        chosen = [visible[i] for i in ids] if ids else list(visible.values())
        body = {
            "gateways": [
                {
                    "mac_address": gw.mac,
                    "name": gw.name,
                    "meters": [{"address": a} for a in gw.meters],
                }
                for gw in chosen
            ]
        }
        return _json(body, query.get("indent"))

    # --- Realtime API ------------------------------------------------------------------------

    async def _read_meter(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        key = query.get("key", "")
        if (denied := self._auth(key)) is not None:
            return denied
        try:
            params = _parse_read_query(query, self.fleet.timezone)
        except _BadParam as err:
            return status_response(err.code)
        meters = params.meters
        fleet = self.fleet
        fleet.advance_to()
        visible = fleet.meters_for_key(key) or []
        if meters is None:
            meters = visible
        else:
            allowed = set(visible)
            for address in meters:
                if address not in allowed:
                    return status_response(1200, meter=address, key=key)
        if self.faults.force_status is not None:
            return status_response(self.faults.force_status, meters="~".join(meters))
        good_only = query.get("status", "").lower() == "good"
        offset = params.zone.utcoffset(datetime.fromtimestamp(fleet.clock.now(), UTC))
        render = _Renderer(self.faults, params.zone, fleet.timezone, params.fields)
        read_sets = []
        for address in meters:
            meter = fleet.meters[address]
            wire_protocol = "v3" if meter.protocol == "v3" else "v4"
            if params.ver is not None and wire_protocol != params.ver:
                continue
            picked: list[Read] = []  # newest first, then reversed: cheap for cnt=1
            for read in reversed(fleet.history(address)):
                stamp = int(read["Time_Stamp_UTC_ms"])
                if params.until is not None and stamp > params.until:
                    continue
                if params.since is not None and stamp <= params.since:
                    break
                if not meter.reports_at(stamp / 1000):  # first/last report moved since
                    continue
                if good_only and render.is_bad(address, stamp):
                    continue
                picked.append(read)
                if len(picked) >= params.count:
                    break
            if not picked:
                continue
            data = [render.read(meter, r) for r in reversed(picked)]
            good = sum(1 for r in data if r["Good"] == 1)
            read_sets.append(
                {
                    "Meter": address,
                    "Group": 0,
                    "Interval": fleet.interval_s,
                    "Protocol": wire_protocol,
                    "MAC_Addr": meter.gateway_mac or "",
                    "Tz_Offset_Sec": int(offset.total_seconds()) if offset else 0,
                    "Bad_Reads": len(data) - good,
                    "Good_Reads": good,
                    "Credits": 1000,
                    "ReadData": data,
                }
            )
        if not read_sets:
            return status_response(1000, meters="~".join(meters))
        return _json({"readMeter": {"ReadSet": read_sets}}, None)

    # --- Summary API (ekmsim.summary computes, these handlers check keys and encode) -------

    def _refused(self, key: str, wanted: tuple[str, ...]) -> web.Response | None:
        """Status 1200 for the first meter the key may not see."""
        visible = set(self.fleet.meters_for_key(key) or ())
        for address in wanted:
            if address not in visible:
                return status_response(1200, meter=address, key=key)
        return None

    async def _summary(self, request: web.Request) -> web.StreamResponse:
        return self._summary_answer(request, v2=False)

    async def _summary_v2(self, request: web.Request) -> web.StreamResponse:
        if not self.faults.summary_v2:
            return error_response(404)
        return self._summary_answer(request, v2=True)

    async def _summary_v2_unknown(self, request: web.Request) -> web.StreamResponse:
        return error_response(404)

    def _summary_answer(self, request: web.Request, *, v2: bool) -> web.Response:
        query = request.query
        key = query.get("key", "")
        if (denied := self._auth(key)) is not None:
            return denied
        try:
            params = parse_summary_query(query, v2=v2)
        except SummaryError as err:
            return _error_text(err)
        known = self.faults.summary_reports
        if known is not None and params.report not in known:
            return _error_text(SummaryError(f"report: {params.report} is not supported", v2=v2))
        if (refused := self._refused(key, params.meters)) is not None:
            return refused
        fleet = self.fleet
        fleet.advance_to()
        rows = summary_rows(
            fleet, params, now=fleet.clock.now(), v2=v2, numbers=self.faults.numbers_as_json
        )
        return _rows_response(rows)

    async def _firstlast(self, request: web.Request) -> web.StreamResponse:
        if not self.faults.summary_v2:
            return error_response(404)
        query = request.query
        key = query.get("key", "")
        if (denied := self._auth(key)) is not None:
            return denied
        try:
            text = query.get("devices", query.get("meters"))
            addresses = parse_addresses(text, "devices", v2=True)
            zone = parse_zone(query.get("timezone"), v2=True)
        except SummaryError as err:
            return _error_text(err)
        if (refused := self._refused(key, addresses)) is not None:
            return refused
        fleet = self.fleet
        fleet.advance_to()
        return _rows_response(first_last(fleet, addresses, now=fleet.clock.now(), zone=zone))

    async def _gstat(self, request: web.Request) -> web.StreamResponse:
        if not self.faults.summary_v2:
            return error_response(404)
        query = request.query
        key = query.get("key", "")
        if (denied := self._auth(key)) is not None:
            return denied
        visible = {gw.mac: gw for gw in self.fleet.gateways_for_key(key)}
        wanted = [
            m.strip().lower().replace(":", "")
            for m in query.get("gateways", query.get("devices", "")).split("~")
            if m.strip()
        ]
        for mac in wanted:
            if mac not in visible:
                return status_response(1200, meter=mac, key=key)
        chosen = [visible[m] for m in dict.fromkeys(wanted)] if wanted else list(visible.values())
        fleet = self.fleet
        rows = gateway_status(chosen, now=fleet.clock.now(), interval_s=fleet.interval_s)
        return _rows_response(rows)

    # --- admin -------------------------------------------------------------------------------

    async def _admin_state(self, request: web.Request) -> web.StreamResponse:
        fleet = self.fleet
        return web.json_response(
            {
                "now": fleet.clock.now(),
                "interval_s": fleet.interval_s,
                "faults": self.faults.to_json(),
                "requests": dict(self.requests),
                "gateways": [_gateway_json(gw) for gw in fleet.gateways.values()],
                "meters": [_meter_json(m) for m in fleet.meters.values()],
            }
            | self.control.state()
        )

    async def _admin_faults(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.faults.reset()
        elif request.method == "POST":
            try:
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise TypeError("expected a JSON object")  # noqa: TRY301
                self.faults.update(changes)
            except (ValueError, TypeError) as err:
                return web.json_response({"error": str(err)}, status=400)
        return web.json_response(self.faults.to_json())

    async def _admin_requests(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.reset_counts()
        return web.json_response(
            {"counts": dict(self.requests), "total": sum(self.requests.values())}
        )

    async def _admin_keys(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        key = body.get("key")
        if not isinstance(key, str) or not key:
            return web.json_response({"error": "expected {'key': ...}"}, status=400)
        if request.path.endswith("/revoke"):
            self.fleet.revoke(key)
        else:
            self.fleet.restore(key)
        return web.json_response({"revoked": key in self.fleet.revoked_keys})

    async def _admin_meters(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([_meter_json(m) for m in self.fleet.meters.values()])

    async def _admin_meter(self, request: web.Request) -> web.StreamResponse:
        meter = self.fleet.meters.get(request.match_info["address"].zfill(12))
        if meter is None:
            return web.json_response({"error": "unknown meter"}, status=404)
        body = await _json_body(request)
        for name in ("first_report", "last_report", "replace_at", "initial_kwh"):
            value = body.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                return web.json_response({"error": f"{name}: a number"}, status=400)
        if isinstance(body.get("first_report"), int | float):
            meter.first_report = float(body["first_report"])
        if "last_report" in body:
            last = body["last_report"]
            meter.last_report = None if last is None else float(last)
        for name in ("responsive", "solar"):
            if isinstance(body.get(name), bool):
                setattr(meter, name, body[name])
        relays = body.get("relays")
        if isinstance(relays, list) and len(relays) == 2 and meter.supports_relays:
            meter.relays = [bool(r) for r in relays]
        if body.get("replace") is True or body.get("replace_at") is not None:
            at = body.get("replace_at")
            try:
                self.fleet.replace_registers(
                    meter.address,
                    None if at is None else float(at),
                    float(body.get("initial_kwh") or 0.0),
                )
            except ValueError as err:
                return web.json_response({"error": str(err)}, status=400)
        return web.json_response(_meter_json(meter))

    async def _admin_gateway(self, request: web.Request) -> web.StreamResponse:
        mac = request.match_info["mac"].lower().replace(":", "")
        if mac not in self.fleet.gateways:
            return web.json_response({"error": "unknown gateway"}, status=404)
        body = await _json_body(request)
        if isinstance(body.get("online"), bool):
            self.fleet.set_gateway_online(mac, body["online"])
        return web.json_response(_gateway_json(self.fleet.gateways[mac]))

    async def _admin_control(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        action = self.fleet.controls.get(name)
        if action is None:
            return web.json_response(
                {"error": f"unknown control {name}", "controls": sorted(self.fleet.controls)},
                status=404,
            )
        await action()
        return web.json_response({"done": name})

    async def _admin_advance(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        seconds = body.get("seconds", self.fleet.interval_s)
        if not isinstance(seconds, int | float) or seconds < 0:
            return web.json_response({"error": "seconds >= 0"}, status=400)
        reads = self.fleet.advance(float(seconds))
        return web.json_response({"now": self.fleet.clock.now(), "reads": len(reads)})


ADMIN_HELP: Final = (
    """\
GET  /_sim/state                      clock, faults, request counts, gateways, meters,
                                      commands, triggers
GET|POST|DELETE /_sim/faults          read / update (partial JSON) / reset the fault knobs
                                      ("summary_v2": false = no Summary V2, 404;
                                      "summary_reports": ["15", "hr"] = others refused;
                                      "command_delay_s", "drop_commands",
                                      "command_token_required": Settings API;
                                      Push3 LAN API: "lan_wrong_key": true (500 HTML),
                                      "lan_latency_s", "lan_fail_next": [429, 500],
                                      "lan_error_rates", "lan_malformed": "not_json" ...,
                                      "lan_drop": true (connection closed),
                                      "lan_stale_meters": ["000000010389"] (last read kept))
GET|DELETE /_sim/requests             API request counts per endpoint / reset them
POST /_sim/keys/revoke {"key": K}     make a key invalid (403); /_sim/keys/restore undoes it
GET  /_sim/meters                     meter summaries
POST /_sim/meters/<address> {...}     set "responsive" (false = stale from now), "solar",
                                      "relays", "first_report" / "last_report" (epoch s,
                                      null = still reporting); "replace": true (a new meter
                                      from now) or "replace_at": epoch, with "initial_kwh"
                                      (default 0): registers restart lower
POST /_sim/gateways/<mac> {"online": B}  GStat state (offline: last seen now, and
                                      commands wait until it is online again)
POST /_sim/advance {"seconds": S}     move the simulated clock and generate reads
POST /_sim/control/<name>             run a control of another service (mqtt_stop, mqtt_start)
"""
    + CONTROL_HELP
)


# --- rendering -------------------------------------------------------------------------------


class _Renderer:
    """Turn stored (normalized) reads into the cloud's wire form."""

    _ONE_DECIMAL: Final = frozenset(
        {*(f"RMS_Volts_Ln_{n}" for n in (1, 2, 3)), *(f"Amps_Ln_{n}" for n in (1, 2, 3)),
         "RMS_Watts_Max_Demand"}
    )  # fmt: skip
    _AS_INT: Final = frozenset({"Good", "Time_Stamp_UTC_ms", "Good_Reads_Ratio"})

    def __init__(self, faults: Faults, zone: tzinfo, stored_zone: str, wanted: list[str]) -> None:
        self._faults = faults
        self._zone = zone
        self._same_zone = getattr(zone, "key", "UTC") == stored_zone.replace("~", "/")
        self._wanted = wanted
        self._stamps: dict[int, tuple[str, str]] = {}

    def _date_time(self, read: Read) -> tuple[str, str]:
        if self._same_zone:
            return str(read["Date"]), str(read["Time"])
        stamp = int(read["Time_Stamp_UTC_ms"])
        cached = self._stamps.get(stamp)
        if cached is None:
            local = datetime.fromtimestamp(stamp / 1000, self._zone)
            cached = self._stamps[stamp] = (f"{local:%Y-%m-%d}", f"{local:%H:%M:%S}")
        return cached

    def is_bad(self, address: str, stamp: int) -> bool:
        """Whether the bad-read fault hits this read (deterministic per meter and time)."""
        rate = self._faults.bad_read_rate
        return rate > 0 and zlib.crc32(f"{address}:{stamp}".encode()) / 2**32 < rate

    def read(self, meter: SimMeter, read: Read) -> dict[str, Any]:
        """Return one ReadData element."""
        faults = self._faults
        stamp = int(read["Time_Stamp_UTC_ms"])
        date, clock = self._date_time(read)
        out: dict[str, Any] = {"Good": 1, "Date": date, "Time": clock, "Time_Stamp_UTC_ms": stamp}
        if self.is_bad(meter.address, stamp):
            out["Good"] = 0
            out["PERR.NR"] = "1"
            return out
        extra: dict[str, Any] = {
            "Good_Reads_Ratio": 100,
            "Read_Attempts": "1",
            "PERR.NR": "0",
            "PERR.RXP": "0",
        }
        names: list[str] = self._wanted or [*read, *extra, *faults.extra_fields]
        kwh_decimals = meter.kwh_decimals
        as_numbers = faults.numbers_as_json
        for name in names:
            if name in ALWAYS_FIELDS:
                continue
            if name in faults.extra_fields:
                out[name] = faults.extra_fields[name]
                continue
            value = read.get(name, extra.get(name))
            if value is None:
                continue
            if isinstance(value, str) or as_numbers or name in self._AS_INT:
                out[name] = value
            elif isinstance(value, int):
                out[name] = str(value)
            elif "kWh" in name or name == "Reactive_Energy_Tot":
                out[name] = f"{value:.{kwh_decimals}f}"
            elif name in self._ONE_DECIMAL:
                out[name] = f"{value:.1f}"
            elif name == "Line_Freq":
                out[name] = f"{value:.2f}"
            else:
                out[name] = repr(value)
        return out


def _malform(kind: str, response: web.Response) -> web.Response:
    body = response.body if isinstance(response.body, bytes) else b"{}"
    match kind:
        case "not_json":
            return web.Response(
                text="<html><body>Service temporarily unavailable</body></html>",
                content_type="text/html",
            )
        case "truncated":
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        case "wrong_shape":
            return web.json_response(["unexpected", "shape"])
        case "readset_not_list":
            return web.json_response({"readMeter": {"ReadSet": {"not": "a list"}}})
        case "error_body":
            return web.json_response({"error": "Something went wrong"})
        case "auth_error_body":
            return web.json_response({"status_code": 401, "error": "Invalid key"})
    return web.Response(body=b"", content_type="application/json")


def _json(body: Any, indent: str | None) -> web.Response:
    spaces = int(indent) if indent and indent.isdigit() else None
    text = json.dumps(body, indent=spaces, separators=None if spaces else (",", ":"))
    return web.Response(text=text, content_type="application/json")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _account_meter(meter: SimMeter) -> dict[str, Any]:
    """A meter as the Account API lists it: its address, and its name if it has one."""
    return {"address": meter.address} | ({"name": meter.name} if meter.name else {})


def _meter_json(meter: SimMeter) -> dict[str, Any]:
    return {
        "address": meter.address,
        "name": meter.name,
        "protocol": meter.protocol,
        "model": meter.model,
        "gateway": meter.gateway_mac,
        "responsive": meter.responsive,
        "solar": meter.solar,
        "production": meter.production,
        "relays": meter.relays,
        "first_report": meter.first_report,
        "last_report": meter.last_report,
        "unresponsive_since": meter.unresponsive_since,
        "replaced_at": [s.start for s in meter.register_model.segments[1:] if len(s.resets) > 2],
    }


def _gateway_json(gateway: SimGateway) -> dict[str, Any]:
    return {
        "mac": gateway.mac,
        "name": gateway.name,
        "meters": gateway.meters,
        "online": gateway.online,
        "last_seen": gateway.last_seen,
    }


def _error_text(err: SummaryError) -> web.Response:
    """The Summary API's answer to bad arguments: HTTP 200, plain text, 'Error...'."""
    return web.Response(text=err.body(), content_type="text/plain")


def _rows_response(rows: list[dict[str, Any]] | NoData) -> web.Response:
    if isinstance(rows, NoData):
        return status_response(rows.code, **rows.details)
    return web.Response(
        text=json.dumps(rows, separators=(",", ":")), content_type="application/json"
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class _ReadQuery:
    count: int
    since: int | None
    until: int | None
    zone: tzinfo
    ver: str | None
    fields: list[str]
    meters: list[str] | None


def _parse_read_query(query: Mapping[str, str], default_zone: str) -> _ReadQuery:
    """Validate readMeter's query; raises _BadParam with EKM's status code."""
    if any(name not in READ_METER_PARAMS for name in query):
        raise _BadParam(1103)
    if query.get("fmt", query.get("format", "json")).lower() != "json":
        raise _BadParam(1101)
    count = _int_param(query.get("cnt", query.get("count", "1")))
    if count < 1:
        raise _BadParam(1102)
    ver = query.get("ver", "").lower() or None
    if ver not in (None, "v3", "v4"):
        raise _BadParam(1102)
    return _ReadQuery(
        count=min(count, MAX_COUNT),
        since=_int_param(query["since"]) if "since" in query else None,
        until=_int_param(query["until"]) if "until" in query else None,
        zone=_zone_param(query.get("timezone", query.get("tz")), default_zone),
        ver=ver,
        fields=[f for f in query.get("fields", "").split("~") if f],
        meters=_meters_param(query.get("meters")),
    )


def _int_param(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _BadParam(1102) from None


def _meters_param(text: str | None) -> list[str] | None:
    if text is None:
        return None
    meters: list[str] = []
    for part in (p.strip() for p in text.split("~")):
        if not part:
            continue
        if not part.isdigit() or len(part) > 12:
            raise _BadParam(1102)
        meters.append(part.zfill(12))
    if not meters:
        raise _BadParam(1102)
    return list(dict.fromkeys(meters))


def _zone_param(text: str | None, default: str) -> tzinfo:
    name = (text or default).replace("~", "/")
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError, ValueError:
        raise _BadParam(1102) from None


__all__ = [
    "ADMIN_HELP",
    "ENDPOINTS",
    "LAN_ERROR_STATUSES",
    "LAN_MALFORMED_KINDS",
    "MALFORMED_KINDS",
    "STATUS_HTTP",
    "CloudSimulator",
    "Faults",
    "error_response",
    "status_response",
]
