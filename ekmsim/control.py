"""Simulated EKM control APIs: Gateway Settings (``/sendCommand``) and Triggers (``/api/trigger``).

CloudSimulator serves these next to the read APIs, wrapped in the same request counting
and fault injection (endpoint names ``sendCommand`` and ``trigger``). The wire follows
shared/docs/ekm-cloud-api.md §6, §7 and §13; what EKM does not document is inferred here:

* ``/sendCommand?key=K&gateway=MAC``: a gateway key may leave ``gateway`` out (its own),
  and the key may also come in the body (one edition of EKM's docs says so). An accepted
  command is queued on the gateway and applied ``Faults.command_delay_s`` real seconds
  later (the gateway polls its push stream), or once an offline gateway is online again;
  then the gateway reports the meter at once (Fleet.report_now). A bearer token is
  needed only with ``Faults.command_token_required`` (401 without), but one that is sent
  must be valid (403).
* ``/api/trigger``: a bearer token on every request (403 when missing, unknown, revoked,
  of another account, or READ-only on POST/PUT/DELETE). GET/POST take ``gateway``,
  GET/PUT/DELETE take ``trigger``, never both (400). A trigger of a gateway the key may
  not reach is 403 (not 404: the trigger exists). Any unknown trigger id is 404.
* Key rules as the read APIs: no key 401; an unknown or revoked key 403; a gateway key
  reaches only its own gateway (403); an account key naming an unknown gateway is 400.
  A meter key (a tenant's) may not command any gateway, its own meter's neither, nor
  read or change triggers: 403 (Fleet's key comment).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
import copy
import json
import logging
from typing import TYPE_CHECKING, Any, Final
import uuid

from aiohttp import web

from .fleet import DROPPED, QUEUED, Fleet, SimCommand, SimGateway, SimToken

if TYPE_CHECKING:
    from .cloud import CloudSimulator

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
type Wrap = Callable[[str, Handler], Handler]

_LOGGER = logging.getLogger(__name__)

COMMANDS: Final = ("SetRelay",)
RELAYS: Final[Mapping[str, int]] = {"relay_1": 1, "relay_2": 2}
RELAY_STATUSES: Final[Mapping[str, bool]] = {"close": True, "open": False}  # close = on
MAX_DURATION_S: Final = 9999
COMMAND_LOG_LEN: Final = 1000
KEY_REQUIRED: Final = "Unauthorized - key required"
INVALID_KEY: Final = "Unauthorized - invalid key"
INVALID_KEY_OR_TOKEN: Final = "Unauthorized - invalid key or API token"  # EKM's text (§7)
TOKEN_REQUIRED: Final = "Unauthorized - API token required"
TRIGGER_NOT_FOUND: Final = "Invalid trigger id (trigger not found)"  # EKM's text (§7)
_HEX: Final = frozenset("0123456789abcdef")


class _Refused(Exception):
    """A request refused with an HTTP status and an ``{"error": ...}`` body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def response(self) -> web.Response:
        return web.json_response({"error": self.text}, status=self.status)


class ControlApi:
    """The Settings and Trigger APIs of one CloudSimulator (its fleet and faults)."""

    def __init__(self, sim: CloudSimulator) -> None:
        self._sim = sim
        # Every command received, oldest first (GET /_sim/commands).
        self.commands: deque[SimCommand] = deque(maxlen=COMMAND_LOG_LEN)
        self._timers: dict[SimCommand, asyncio.TimerHandle] = {}
        self._pending: list[tuple[Fleet, SimCommand]] = []

    def add_routes(self, app: web.Application, api: Wrap) -> None:
        """Register the API routes (wrapped by ``api``) and the admin routes."""
        app.router.add_post("/sendCommand", api("sendCommand", self.send_command))
        trigger = api("trigger", self.trigger)
        for method in ("GET", "POST", "PUT", "DELETE"):
            app.router.add_route(method, "/api/trigger", trigger)
        app.router.add_get("/_sim/commands", self._admin_commands)
        app.router.add_delete("/_sim/commands", self._admin_commands)
        app.router.add_get("/_sim/triggers", self._admin_triggers)
        app.router.add_post("/_sim/tokens", self._admin_tokens)

    def stop(self) -> None:
        """Cancel every command not applied yet (the simulator stops)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for fleet, command in self._pending:
            fleet.cancel_command(command)
        self._pending.clear()

    def state(self) -> dict[str, Any]:
        """What /_sim/state shows of the control APIs."""
        return {
            "commands": [c.to_json() for c in self.commands],
            "triggers": self._sim.fleet.triggers,
        }

    # --- Gateway Settings API ----------------------------------------------------------------

    async def send_command(self, request: web.Request) -> web.StreamResponse:
        """POST /sendCommand: validate, queue on the gateway, answer with a msg_id."""
        try:
            return await self._send_command(request)
        except _Refused as err:
            return err.response()

    async def _send_command(self, request: web.Request) -> web.Response:
        fleet = self._sim.fleet
        faults = self._sim.faults
        body = await _body(request)
        key = request.query.get("key") or ""
        if not key and isinstance(body, dict) and isinstance(body.get("key"), str):
            key = body["key"]
        if not key:
            raise _Refused(401, KEY_REQUIRED)
        sent, token = _bearer(request)
        if sent:
            _check_token(fleet, token)
        elif faults.command_token_required:
            raise _Refused(401, TOKEN_REQUIRED)
        if fleet.key_type(key) in (None, "meter"):
            raise _Refused(403, INVALID_KEY_OR_TOKEN if sent else INVALID_KEY)
        gateway = _command_gateway(fleet, key, request.query.get("gateway"))
        command = _parse_command(body, gateway, fleet.clock.now())
        self.commands.append(command)
        if faults.drop_commands:
            command.outcome = DROPPED
        else:
            self._queue(fleet, command, faults.command_delay_s)
        assert isinstance(body, dict)
        channel = body.get("response_channel_id")
        return web.json_response(
            {
                "msg_id": command.msg_id,
                "response_channel_id": channel if isinstance(channel, str) and channel
                else uuid.uuid4().hex,
                "response_channel_host": request.host,
            }
        )  # fmt: skip

    def _queue(self, fleet: Fleet, command: SimCommand, delay_s: float) -> None:
        fleet.queue_command(command)
        self._pending = [(f, c) for f, c in self._pending if c.outcome == QUEUED]
        self._pending.append((fleet, command))
        loop = asyncio.get_running_loop()
        self._timers[command] = loop.call_later(max(0.0, delay_s), self._ready, fleet, command)

    def _ready(self, fleet: Fleet, command: SimCommand) -> None:
        self._timers.pop(command, None)
        try:
            fleet.command_ready(command)
        except Exception:
            _LOGGER.exception("Applying command %s failed", command.msg_id)

    # --- Trigger API -------------------------------------------------------------------------

    async def trigger(self, request: web.Request) -> web.StreamResponse:
        """GET/POST/PUT/DELETE /api/trigger (see the module docstring)."""
        try:
            return await self._trigger(request)
        except _Refused as err:
            return err.response()

    async def _trigger(self, request: web.Request) -> web.Response:
        fleet = self._sim.fleet
        query = request.query
        method = request.method
        sent, token = _bearer(request)
        if not sent:
            raise _Refused(403, INVALID_KEY_OR_TOKEN)
        known = _check_token(fleet, token)
        key = query.get("key", "")
        if not key:
            raise _Refused(401, KEY_REQUIRED)
        if fleet.key_type(key) in (None, "meter"):
            raise _Refused(403, INVALID_KEY_OR_TOKEN)
        if method != "GET" and not known.write:
            raise _Refused(403, INVALID_KEY_OR_TOKEN)
        wanted_gateway, wanted_trigger = query.get("gateway"), query.get("trigger")
        if (wanted_gateway is None) == (wanted_trigger is None):
            raise _Refused(400, "Give either gateway=<MAC> or trigger=<uuid>")
        if wanted_gateway is not None:
            if method not in ("GET", "POST"):
                raise _Refused(400, f"{method} needs trigger=<uuid>, not gateway")
            mac = _reachable(fleet, key, wanted_gateway, INVALID_KEY_OR_TOKEN).mac
            if method == "GET":
                found = list(fleet.triggers.get(mac, {}).values())
                return _json({"triggers": found}, query.get("indent"))
            fields = _trigger_body(await _body(request))
            fields.pop("trigger_uuid", None)  # the server picks it
            created = fleet.add_trigger(mac, fields)
            return web.json_response(created)
        if method == "POST":
            raise _Refused(400, "POST needs gateway=<MAC>, not trigger")
        uid = wanted_trigger.strip().lower().replace("-", "") if wanted_trigger else ""
        stored = fleet.find_trigger(uid)
        if stored is None:
            raise _Refused(404, TRIGGER_NOT_FOUND)
        mac = stored["gateway"]
        if mac not in {gw.mac for gw in fleet.gateways_for_key(key)}:
            raise _Refused(403, INVALID_KEY_OR_TOKEN)
        if method == "GET":
            return _json({"triggers": [stored]}, query.get("indent"))
        if method == "PUT":
            fields = _trigger_body(await _body(request))
            return web.json_response(fleet.add_trigger(mac, fields | {"trigger_uuid": uid}))
        del fleet.triggers[mac][uid]
        return web.json_response({"trigger_uuid": uid, "deleted": True})

    # --- admin -------------------------------------------------------------------------------

    async def _admin_commands(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.commands.clear()
        return web.json_response([c.to_json() for c in self.commands])

    async def _admin_triggers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._sim.fleet.triggers)

    async def _admin_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        token = body.get("token") if isinstance(body, dict) else None
        write = body.get("write", True) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(write, bool):
            return web.json_response(
                {"error": "expected {'token': T, 'write': true|false}"}, status=400
            )
        added = self._sim.fleet.add_token(token, write=write)
        return web.json_response({"write": added.write})


ADMIN_HELP: Final = """\
GET|DELETE /_sim/commands             Settings API commands received (time, gateway, body,
                                      applied_at, outcome) / forget them
GET  /_sim/triggers                   the Trigger API's store (gateway MAC -> uuid -> trigger)
POST /_sim/tokens {"token": T, "write": B}  add an API token (write false = READ only);
                                      revoke one with /_sim/keys/revoke {"key": T}
"""


def _bearer(request: web.Request) -> tuple[bool, str]:
    """(whether an Authorization header was sent, its bearer token or "")."""
    header = request.headers.get("Authorization")
    if header is None:
        return False, ""
    scheme, _, token = header.strip().partition(" ")
    return True, token.strip() if scheme.lower() == "bearer" else ""


def _check_token(fleet: Fleet, token: str) -> SimToken:
    """The fleet's SimToken, else 403 (unknown, revoked, or another account's)."""
    known = fleet.token(token)
    if known is None or known.account_key != fleet.account_key:
        raise _Refused(403, INVALID_KEY_OR_TOKEN)
    return known


def normalize_mac(text: str) -> str | None:
    """Lowercase 12 hex digits from a MAC (":" or "-" separators allowed), else None."""
    mac = text.strip().lower().replace(":", "").replace("-", "")
    return mac if len(mac) == 12 and set(mac) <= _HEX else None


def _reachable(fleet: Fleet, key: str, text: str, forbidden: str = INVALID_KEY) -> SimGateway:
    """The gateway named by ``text`` if the key may reach it (400 / 403 otherwise)."""
    mac = normalize_mac(text)
    if mac is None:
        raise _Refused(400, "Invalid gateway MAC address")
    if fleet.key_type(key) != "account":  # a gateway key (meter keys never get here)
        mine = fleet.gateways_for_key(key)
        if not any(gw.mac == mac for gw in mine):
            raise _Refused(403, forbidden)
    gateway = fleet.gateways.get(mac)
    if gateway is None:
        raise _Refused(400, f"Unknown gateway {mac}")
    return gateway


def _command_gateway(fleet: Fleet, key: str, text: str | None) -> SimGateway:
    if text is not None:
        return _reachable(fleet, key, text)
    mine = fleet.gateways_for_key(key)
    if fleet.key_type(key) == "gateway" and len(mine) == 1:
        return mine[0]
    raise _Refused(400, "Missing parameter gateway (the Push3 gateway MAC address)")


def _parse_command(body: object, gateway: SimGateway, now: float) -> SimCommand:
    """A SimCommand from a sendCommand body, else 400 with a clear text."""
    if not isinstance(body, dict):
        raise _Refused(400, "The body must be a JSON object")
    command = body.get("command")
    if command not in COMMANDS:
        raise _Refused(400, f"Unknown command {str(command)[:40]!r} (known: SetRelay)")
    if body.get("target") != "meter":
        raise _Refused(400, "SetRelay: target must be 'meter'")
    meter = body.get("target_id")
    if not isinstance(meter, str) or meter not in gateway.meters:
        raise _Refused(400, f"target_id: not a meter on gateway {gateway.mac}")
    for name in ("client", "response_channel_id"):
        if name in body and not isinstance(body[name], str):
            raise _Refused(400, f"{name}: a string")
    params = body.get("params")
    if not isinstance(params, dict):
        raise _Refused(400, "params: a JSON object")
    relay = params.get("relay")
    if not isinstance(relay, str) or relay not in RELAYS:
        raise _Refused(400, "params.relay: 'relay_1' or 'relay_2'")
    status = params.get("status")
    if not isinstance(status, str) or status not in RELAY_STATUSES:
        raise _Refused(400, "params.status: 'close' or 'open'")
    duration = params.get("duration", 0)
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise _Refused(400, "params.duration: an integer number of seconds")
    if not 0 <= duration <= MAX_DURATION_S:
        raise _Refused(400, f"params.duration: 0..{MAX_DURATION_S} seconds")
    return SimCommand(
        msg_id=uuid.uuid4().hex,
        gateway=gateway.mac,
        meter=meter,
        relay=RELAYS[relay],
        closed=RELAY_STATUSES[status],
        duration_s=duration,
        body=copy.deepcopy({k: v for k, v in body.items() if k != "key"}),
        received_at=now,
    )


def _trigger_body(body: object) -> dict[str, Any]:
    """A trigger object to store (a copy), else 400."""
    if not isinstance(body, dict):
        raise _Refused(400, "The body must be a JSON object (a trigger)")
    if not isinstance(body.get("trigger_name"), str):
        raise _Refused(400, "trigger_name: a string")
    return copy.deepcopy(body)


async def _body(request: web.Request) -> object:
    """The JSON body, or None when it is missing or not JSON."""
    try:
        return json.loads(await request.read() or b"null")
    except ValueError:
        return None


def _json(body: Any, indent: str | None) -> web.Response:
    spaces = int(indent) if indent and indent.isdigit() else None
    text = json.dumps(body, indent=spaces, separators=None if spaces else (",", ":"))
    return web.Response(text=text, content_type="application/json")


__all__ = ["ADMIN_HELP", "COMMANDS", "RELAYS", "ControlApi", "normalize_mac"]
