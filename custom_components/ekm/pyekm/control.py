"""Async client for EKM's cloud control: the Gateway Settings API and the Trigger API.

``sendCommand`` hands a command (a relay switch, say) to a Push3 gateway, which fetches it
on its own schedule: a success means *sent to the gateway*, never *executed*
(ekm-cloud-api.md §6). The Trigger API looks up, creates, updates and deletes the
triggers a Push3 runs by itself (§7); every call needs an API bearer token (§13), and
``sendCommand`` takes one when the server asks for it.

Like ``cloud.py`` it takes an injected ``aiohttp.ClientSession``; the key travels only in
``params=`` and the token only in the Authorization header (see ``http.py``), so neither
reaches an error message, a log line or ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import re
from typing import Any, Final

import aiohttp

from .catalog import normalize_address
from .cloud import DEFAULT_SERVER
from .errors import (
    EkmResponseError,
    EkmServerError,
    EkmTokenRequiredError,
    EkmTriggerNotFoundError,
)
from .http import DEFAULT_TIMEOUT, EkmHttpClient
from .summary import normalize_mac

CLIENT_NAME: Final = "home-assistant-ekm"  # the stable ``client`` sent with every command

# --- EKM wire names --------------------------------------------------------------------
# Documented (ekm-cloud-api.md §6.1, §6.2, §7):
SEND_COMMAND_PATH: Final = "/sendCommand"  # POST ?key=&gateway=, JSON body
TRIGGER_PATH: Final = "/api/trigger"  # GET ?key=&gateway= (a list) or ?key=&trigger=
SET_RELAY: Final = "SetRelay"
METER_TARGET: Final = "meter"
RELAY_CLOSE: Final = "close"  # relay closed: on
TRIGGERS_FIELD: Final = "triggers"  # {"triggers": [<trigger>, ...]}
TRIGGER_UUID_FIELD: Final = "trigger_uuid"  # 32 lower-case hex digits, no dashes
# INFERRED (not confirmed by EKM; the lead's contract). Change them here and nowhere else:
RELAY_NAMES: Final = {1: "relay_1", 2: "relay_2"}  # only "relay_1" is in EKM's example
RELAY_OPEN: Final = "open"  # relay open: off (EKM's example shows only "close")
RELAY_HOLD: Final = 0  # duration 0 = stay switched (EKMPY's RelayInterval.Hold)
MAX_RELAY_DURATION_S: Final = 9999  # EKMPY's maximum relay interval
# Create/update/delete (the token page: READ/WRITE permits POST/PUT/DELETE, §13):
CREATE_METHOD: Final = "POST"  # ?gateway=<MAC>, body: the trigger object
UPDATE_METHOD: Final = "PUT"  # ?trigger=<uuid>, body: the trigger object
DELETE_METHOD: Final = "DELETE"  # ?trigger=<uuid>; any JSON or an empty body
TRIGGER_FIELD: Final = "trigger"  # an answer may also be {"trigger": <trigger>} or bare
# check_token without a gateway looks up this id: 404 means key and token were accepted.
CHECK_TOKEN_UUID: Final = "0" * 32
# ---------------------------------------------------------------------------------------

_MAC: Final = re.compile(r"[0-9a-f]{12}")
_UUID: Final = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandReceipt:
    """EKM's answer to ``sendCommand``: the command was handed to the gateway.

    ``msg_id`` identifies the gateway's response message, published on the response
    channel (``response_channel_id`` at ``response_channel_host``); each is None when
    EKM left it out. ``raw`` is EKM's whole JSON answer, unchanged.
    """

    msg_id: str | None
    response_channel_id: str | None
    response_channel_host: str | None
    raw: dict[str, Any]


class EkmControlClient(EkmHttpClient):
    """EKM cloud control client (Settings and Trigger APIs) for one key and API token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        key: str,
        *,
        token: str | None = None,
        server: str = DEFAULT_SERVER,
        timeout: float = DEFAULT_TIMEOUT,
        client_name: str = CLIENT_NAME,
    ) -> None:
        super().__init__(session, key, timeout=timeout)
        self._server = server.rstrip("/")
        self._token = token or None
        self._client_name = client_name

    def __repr__(self) -> str:
        """The server and whether a token is set (never the key or the token)."""
        return f"<EkmControlClient server={self._server!r} has_token={self.has_token}>"

    @property
    def server(self) -> str:
        """The server base URL (contains no secret)."""
        return self._server

    @property
    def token(self) -> str | None:
        """The API bearer token, None for none (an empty string is none too)."""
        return self._token

    @token.setter
    def token(self, token: str | None) -> None:
        self._token = token or None

    @property
    def has_token(self) -> bool:
        """True when an API token is set."""
        return self._token is not None

    # --- Gateway Settings API --------------------------------------------------------------

    async def send_command(
        self,
        gateway_mac: str,
        command: str,
        target: str,
        target_id: str,
        params: Mapping[str, Any] | None = None,
        *,
        response_channel_id: str | None = None,
    ) -> CommandReceipt:
        """Send ``command`` for ``target`` ``target_id`` to a Push3 gateway.

        A ``meter`` target's id is normalised to 12 digits. The bearer token goes along
        when one is set. Success means EKM handed the command to the gateway, not that the
        device carried it out. Raises ValueError for a malformed MAC or meter address, and
        the errors of ``EkmHttp.request_json`` (EkmInvalidParametersError for an unknown
        command, gateway or meter, EkmTokenRequiredError when the server wants a token).
        """
        mac = normalize_gateway_mac(gateway_mac)
        if target == METER_TARGET:
            target_id = normalize_address(target_id)
        body: dict[str, Any] = {
            "target": target,
            "target_id": target_id,
            "command": command,
            "client": self._client_name,
            "params": dict(params or {}),
        }
        if response_channel_id is not None:
            body["response_channel_id"] = response_channel_id
        data = await self._http.request_json(
            "POST",
            self._server + SEND_COMMAND_PATH,
            {"gateway": mac},
            json_body=body,
            token=self._token,
        )
        if not isinstance(data, Mapping):
            raise EkmResponseError("Settings API answer is not a JSON object")
        return CommandReceipt(
            msg_id=_text(data.get("msg_id")),
            response_channel_id=_text(data.get("response_channel_id")),
            response_channel_host=_text(data.get("response_channel_host")),
            raw=dict(data),
        )

    async def set_relay(
        self, gateway_mac: str, meter: str, relay: int, on: bool, duration_s: int = 0
    ) -> CommandReceipt:
        """Close (``on``) or open relay 1 or 2 of a v4/v5 meter through its gateway.

        ``duration_s`` seconds later the meter switches back by itself; 0 holds the new
        state. Raises ValueError for a relay other than 1 or 2, a duration outside
        0-9999 s or a malformed MAC or address; otherwise as ``send_command``.
        """
        if isinstance(relay, bool) or relay not in RELAY_NAMES:
            raise ValueError("relay must be 1 or 2")
        if (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, int)
            or not RELAY_HOLD <= duration_s <= MAX_RELAY_DURATION_S
        ):
            raise ValueError(f"duration_s must be {RELAY_HOLD} to {MAX_RELAY_DURATION_S}")
        params = {
            "relay": RELAY_NAMES[relay],
            "status": RELAY_CLOSE if on else RELAY_OPEN,
            "duration": duration_s,
        }
        return await self.send_command(gateway_mac, SET_RELAY, METER_TARGET, meter, params)

    # --- Trigger API -----------------------------------------------------------------------

    async def list_triggers(self, gateway_mac: str) -> list[dict[str, Any]]:
        """Every trigger of a gateway, as EKM sent them (the schema is not published)."""
        data = await self._trigger("GET", {"gateway": normalize_gateway_mac(gateway_mac)})
        items = data.get(TRIGGERS_FIELD) if isinstance(data, Mapping) else data
        if not isinstance(items, list):
            raise EkmResponseError("Trigger API answer has no trigger list")
        return [dict(item) for item in items if isinstance(item, Mapping)]

    async def get_trigger(self, trigger_uuid: str) -> dict[str, Any]:
        """One trigger by id. Raises EkmTriggerNotFoundError for an unknown id."""
        uuid = normalize_trigger_uuid(trigger_uuid)
        data = await self._trigger("GET", {"trigger": uuid})
        trigger = _one_trigger(data, uuid)
        if trigger is None:
            if isinstance(data, Mapping) and data.get(TRIGGERS_FIELD) == []:
                raise EkmTriggerNotFoundError("EKM knows no trigger with that id")
            raise EkmResponseError("Trigger API answer does not describe one trigger")
        return trigger

    async def create_trigger(self, gateway_mac: str, trigger: Mapping[str, Any]) -> dict[str, Any]:
        """Create a trigger on a gateway; the created trigger (with its ``trigger_uuid``).

        ``trigger`` is sent unchanged. The answer's trigger is returned when one is
        recognisable (in ``triggers``, ``trigger`` or bare), else EKM's answer unchanged.
        """
        data = await self._trigger(
            CREATE_METHOD, {"gateway": normalize_gateway_mac(gateway_mac)}, dict(trigger)
        )
        return _written(data)

    async def update_trigger(self, trigger_uuid: str, trigger: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a trigger's definition; the updated trigger (as ``create_trigger``)."""
        uuid = normalize_trigger_uuid(trigger_uuid)
        data = await self._trigger(UPDATE_METHOD, {"trigger": uuid}, dict(trigger))
        return _written(data, uuid)

    async def delete_trigger(self, trigger_uuid: str) -> dict[str, Any]:
        """Delete a trigger; EKM's JSON answer ({} for an empty or non-object answer)."""
        data = await self._trigger(DELETE_METHOD, {"trigger": normalize_trigger_uuid(trigger_uuid)})
        return dict(data) if isinstance(data, Mapping) else {}

    async def check_token(self, gateway_mac: str | None = None) -> None:
        """Check that EKM accepts the key and token, with a harmless lookup.

        With a gateway its trigger list is asked for; without one a trigger that does not
        exist, whose 404 means key and token passed. Raises EkmTokenRequiredError without
        a token and EkmTokenError when EKM rejects them; other errors as the lookups.
        """
        if gateway_mac is not None:
            await self.list_triggers(gateway_mac)
            return
        try:
            await self.get_trigger(CHECK_TOKEN_UUID)
        except EkmTriggerNotFoundError:
            return

    async def _trigger(
        self, method: str, params: Mapping[str, str], body: Mapping[str, Any] | None = None
    ) -> Any:
        """One Trigger API request with the token; 404 is EkmTriggerNotFoundError."""
        if self._token is None:
            raise EkmTokenRequiredError("The EKM Trigger API requires an API token")
        try:
            return await self._http.request_json(
                method, self._server + TRIGGER_PATH, params, json_body=body, token=self._token
            )
        except EkmServerError as err:
            if err.status == 404:
                raise EkmTriggerNotFoundError("EKM knows no trigger with that id") from None
            raise


def normalize_gateway_mac(mac: str) -> str:
    """A gateway MAC as EKM writes it (lower case, no separators); ValueError if not one."""
    normal = normalize_mac(str(mac)).replace(".", "")
    if not _MAC.fullmatch(normal):
        raise ValueError("A gateway MAC address is 12 hexadecimal digits")
    return normal


def normalize_trigger_uuid(trigger_uuid: str) -> str:
    """A trigger id as EKM writes it (32 lower-case hex digits); ValueError if not one."""
    normal = str(trigger_uuid).strip().lower().replace("-", "")
    if not _UUID.fullmatch(normal):
        raise ValueError("A trigger id is 32 hexadecimal digits")
    return normal


def _text(value: object) -> str | None:
    """A receipt field as text (numbers too); None when absent or empty."""
    if value is None or isinstance(value, (Mapping, list, bool)):
        return None
    text = str(value)
    return text or None


def _one_trigger(data: Any, uuid: str | None = None) -> dict[str, Any] | None:
    """The trigger in ``{"triggers": [...]}``, ``{"trigger": {...}}`` or a bare object.

    From a list, the entry with ``uuid`` (else its only entry). None when not recognisable.
    """
    if not isinstance(data, Mapping):
        return None
    items = data.get(TRIGGERS_FIELD)
    if isinstance(items, list):
        found = [item for item in items if isinstance(item, Mapping)]
        match = [t for t in found if str(t.get(TRIGGER_UUID_FIELD, "")).lower() == uuid]
        if match or len(found) == 1:
            return dict((match or found)[0])
        return None
    single = data.get(TRIGGER_FIELD)
    if isinstance(single, Mapping):
        return dict(single)
    return dict(data)


def _written(data: Any, uuid: str | None = None) -> dict[str, Any]:
    """A create/update answer's trigger, else the answer unchanged (a JSON object)."""
    trigger = _one_trigger(data, uuid)
    if trigger is not None:
        return trigger
    if isinstance(data, Mapping):
        return dict(data)
    raise EkmResponseError("Trigger API answer is not a JSON object")


__all__ = [
    "CLIENT_NAME",
    "CommandReceipt",
    "EkmControlClient",
    "normalize_gateway_mac",
    "normalize_trigger_uuid",
]
