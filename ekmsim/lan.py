"""Simulated Push3 LAN API: each gateway of the fleet serves ``GET /readMeter`` on its port.

``GET http://<gateway>/readMeter?key=<LAN key>&cnt=N`` answers an object keyed by 12-digit
meter address, each holding that meter's N latest reads, oldest first (ekm-cloud-api.md
§9.1): values are JSON numbers except ``Model``, ``Firmware``, ``Meter_Address``,
``Cos_Theta_*``, ``Meter_Time`` and ``Meter_Status_Code*``, with ``Time_Stamp_UTC_ms``. A
wrong (or revoked) key gets HTTP 500 with an HTML page, as from a real Push3. The reads
are the fleet's stored ones, the very reads the cloud's Realtime API and MQTT serve, so
the three agree for the same meter at the same time; a meter that stopped answering
(``responsive`` false, or ``Faults.lan_stale_meters``) keeps its last read, old timestamp
and all. Faults are the ``lan_*`` knobs of :class:`ekmsim.cloud.Faults` (the cloud's
``/_sim/faults`` when run by ``python -m ekmsim``).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass
import json
from typing import Any, Final

from aiohttp import web

from .cloud import Faults
from .fleet import DEMO_LAN_KEY, Fleet, Read, ReadBatch, SimGateway, SimMeter

DEFAULT_LAN_PORT: Final = 8790  # gateway i (sorted by MAC) listens on DEFAULT_LAN_PORT + i
MAX_COUNT: Final = 1000  # [INF] the cloud's limit; a Push3's own is unknown
# Stored fields a Push3 does not send: the cloud's per-read bookkeeping and the integer PF
# code (the gateway sends Cos_Theta_Ln_n, "0.95 L"; clients derive the code from it).
_NOT_SENT: Final = frozenset(
    {"Good", "Date", "Time", "Power_Factor_Ln_1", "Power_Factor_Ln_2", "Power_Factor_Ln_3"}
)
_FIRST: Final = ("Model", "Firmware", "Meter_Address")
WRONG_KEY_PAGE: Final = (
    "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1></body></html>"
)

__all__ = [
    "DEFAULT_LAN_PORT",
    "DEMO_LAN_KEY",
    "LanGateway",
    "LanSimulator",
    "add_arguments",
    "lan_read",
    "start_service",
]


def lan_read(meter: SimMeter, read: Read) -> dict[str, Any]:
    """One stored read in the Push3 LAN wire form (JSON numbers, the documented strings)."""
    out: dict[str, Any] = {"Model": meter.model, "Firmware": meter.firmware}
    out["Meter_Address"] = meter.address
    for name, value in read.items():
        if name not in _NOT_SENT and name not in _FIRST:
            out[name] = value
    if meter.protocol != "v3":
        out["Request_Type"] = 0
    out["Reliability_Ratio"] = 100
    return out


@dataclass(eq=False, kw_only=True)
class LanGateway:
    """One simulated gateway's LAN endpoint (after :meth:`LanSimulator.start`)."""

    gateway: SimGateway
    bind: str
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def mac(self) -> str:
        """The gateway's MAC."""
        return self.gateway.mac

    @property
    def key(self) -> str:
        """The gateway's LAN key."""
        return self.gateway.lan_key

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>`` (what a user types into a client)."""
        host = "127.0.0.1" if self.bind in ("", "0.0.0.0") else self.bind
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}"


class LanSimulator:
    """Every gateway of a fleet on its own port; ``faults`` are shared with the cloud's."""

    def __init__(self, fleet: Fleet, *, faults: Faults | None = None) -> None:
        self.fleet = fleet
        self.faults = faults if faults is not None else Faults()
        self.gateways: dict[str, LanGateway] = {}  # by MAC, sorted
        self.requests: Counter[str] = Counter()  # readMeter requests per gateway MAC
        self._stopping = asyncio.Event()
        self._fresh_ms: dict[str, int] = {}  # per stale meter: its last read's stamp
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self, host: str = "127.0.0.1", base_port: int = 0) -> None:
        """Serve gateway i (sorted by MAC) on base_port + i (0: any free ports)."""
        self._stopping = asyncio.Event()
        self._unsubscribe = self.fleet.subscribe(self._on_reads)
        try:
            for i, mac in enumerate(sorted(self.fleet.gateways)):
                endpoint = LanGateway(gateway=self.fleet.gateways[mac], bind=host)
                runner = web.AppRunner(
                    self._build_app(endpoint), access_log=None, shutdown_timeout=1.0
                )
                await runner.setup()
                endpoint.runner = runner
                self.gateways[mac] = endpoint
                site = web.TCPSite(runner, host, base_port + i if base_port else 0)
                await site.start()
                endpoint.port = runner.addresses[0][1]
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every gateway's endpoint (slow answers are released)."""
        self._stopping.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for endpoint in self.gateways.values():
            if endpoint.runner is not None:
                runner, endpoint.runner = endpoint.runner, None
                await runner.cleanup()

    def gateway(self, mac: str) -> LanGateway:
        """The endpoint of a gateway (MAC in any case, colons allowed)."""
        return self.gateways[mac.lower().replace(":", "")]

    # --- serving ---------------------------------------------------------------------------

    def _build_app(self, endpoint: LanGateway) -> web.Application:
        app = web.Application()

        async def read_meter(request: web.Request) -> web.StreamResponse:
            return await self._read_meter(endpoint, request)

        app.router.add_get("/readMeter", read_meter)
        app.router.add_get("/readmeter", read_meter)
        return app

    async def _read_meter(self, endpoint: LanGateway, request: web.Request) -> web.StreamResponse:
        faults = self.faults
        self.requests[endpoint.mac] += 1
        if faults.lan_latency_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), faults.lan_latency_s)
        if faults.lan_drop:
            _drop(request)
        key = request.query.get("key", "")
        if faults.lan_wrong_key or key != endpoint.key or key in self.fleet.revoked_keys:
            return web.Response(status=500, text=WRONG_KEY_PAGE, content_type="text/html")
        if faults.lan_fail_next:
            return _error(faults.lan_fail_next.pop(0), faults.retry_after)
        for status, rate in faults.lan_error_rates.items():
            if rate > 0 and faults.rng.random() < rate:
                return _error(status, faults.retry_after)
        body = self.body(endpoint.gateway, _count(request.query.get("cnt")))
        if faults.lan_malformed is not None:
            return _malformed(faults.lan_malformed, body)
        return web.Response(text=json.dumps(body), content_type="application/json")

    def body(self, gateway: SimGateway, count: int = 1) -> dict[str, list[dict[str, Any]]]:
        """What the gateway answers ``cnt=count`` now: its meters' latest reads."""
        fleet = self.fleet
        fleet.advance_to()
        stale = set(self.faults.lan_stale_meters)
        for address in list(self._fresh_ms):
            if address not in stale:
                del self._fresh_ms[address]
        out: dict[str, list[dict[str, Any]]] = {}
        for address in sorted(gateway.meters):
            meter = fleet.meters.get(address)
            if meter is None:
                continue
            history = fleet.history(address)
            until = self._fresh_ms.get(address) if address in stale else None
            if address in stale and until is None and history:
                # Stale since before any read this simulator saw: from now on.
                until = self._fresh_ms[address] = int(history[-1]["Time_Stamp_UTC_ms"])
            picked: list[Read] = []
            for read in reversed(history):
                if until is not None and int(read["Time_Stamp_UTC_ms"]) > until:
                    continue
                picked.append(read)
                if len(picked) >= count:
                    break
            if picked:
                out[address] = [lan_read(meter, read) for read in reversed(picked)]
        return out

    def _on_reads(self, batch: ReadBatch) -> None:
        """Remember each stale meter's last read from before it went stale."""
        stale = set(self.faults.lan_stale_meters)
        for meter, read in batch:
            if meter.address in stale and meter.address not in self._fresh_ms:
                history = self.fleet.history(meter.address)
                if len(history) > 1 and history[-1] is read:
                    self._fresh_ms[meter.address] = int(history[-2]["Time_Stamp_UTC_ms"])


def _count(text: str | None) -> int:
    try:
        count = int(text or "1")
    except ValueError:
        count = 1
    return max(1, min(count, MAX_COUNT))


def _drop(request: web.Request) -> None:
    """Fault: close the connection without an answer (the client sees a reset)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError


def _error(status: int, retry_after: str | None) -> web.Response:
    if status == 429:
        headers = {"Retry-After": retry_after} if retry_after else None
        return web.Response(status=429, text="Too Many Requests", headers=headers)
    # Plain text, not HTML: a 500 with an HTML page is how a Push3 refuses a key.
    return web.Response(status=status, text=f"{status} Server Error", content_type="text/plain")


def _malformed(kind: str, body: dict[str, list[dict[str, Any]]]) -> web.Response:
    text = json.dumps(body)
    match kind:
        case "not_json":
            return web.Response(
                text="<html><body>Please wait</body></html>", content_type="text/html"
            )
        case "truncated":
            return web.Response(text=text[: len(text) // 2], content_type="application/json")
        case "wrong_shape":
            return web.json_response([*body])
        case "bad_address":
            return web.json_response({"10389": next(iter(body.values()), [])} | body)
        case "not_list":
            return web.json_response({a: reads[-1] for a, reads in body.items() if reads})
        case "bad_reads":
            spoiled = {
                address: ["not a read", {"kWh_Tot": 1.0}, {"Time_Stamp_UTC_ms": "x"}, *reads]
                for address, reads in body.items()
            }
            return web.json_response(spoiled)
    return web.Response(body=b"", content_type="application/json")


# --- python -m ekmsim ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--lan-port`` and ``--no-lan`` to the simulator's command line."""
    group = parser.add_argument_group("Push3 LAN API (each gateway's local readMeter)")
    group.add_argument(
        "--lan-port",
        type=int,
        default=None,
        metavar="BASE",
        help=f"gateway i (sorted by MAC) on BASE+i (default {DEFAULT_LAN_PORT}; "
        "0 = any free ports, the default with --port 0)",
    )
    group.add_argument("--no-lan", action="store_true", help="do not serve the LAN API")


async def start_service(
    fleet: Fleet, args: argparse.Namespace
) -> Callable[[], Awaitable[None]] | None:
    """``python -m ekmsim`` hook: serve every gateway's LAN API unless ``--no-lan``.

    Its faults are ``args.sim_faults`` when set (``python -m ekmsim`` shares the cloud's,
    so the cloud's ``/_sim/faults`` sets the ``lan_*`` knobs too).
    """
    if getattr(args, "no_lan", False):
        return None
    base = args.lan_port
    if base is None:
        base = 0 if getattr(args, "port", None) == 0 else DEFAULT_LAN_PORT
    sim = LanSimulator(fleet, faults=getattr(args, "sim_faults", None))
    await sim.start(getattr(args, "host", None) or "127.0.0.1", base)
    for endpoint in sim.gateways.values():
        print(
            f"gateway {endpoint.mac} ({endpoint.gateway.name}) LAN {endpoint.url} "
            f"key: {endpoint.key}",
            flush=True,
        )
    return sim.stop
