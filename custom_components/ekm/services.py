"""Service actions of the EKM Metering integration (registered once, in async_setup)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, cast

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import Platform
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv, device_registry as dr, service
from homeassistant.util import dt as dt_util
from homeassistant.util.json import JsonObjectType, JsonValueType
import probatio as vol

from .const import CONF_ENTRY_TYPE, DOMAIN, ENTRY_RS485
from .control import control_error
from .pyekm import EkmError
from .pyekm.control import EkmControlClient
from .pyekm.summary import Report

if TYPE_CHECKING:
    from . import EkmConfigEntry

ATTR_STATE = "state"
ATTR_DURATION = "duration"
ATTR_METERS = "meters"
ATTR_START = "start"
ATTR_END = "end"
ATTR_REPORT = "report"
ATTR_FIELDS = "fields"
SERVICE_SET_RELAY = "set_relay"
SERVICE_IMPORT_HISTORY = "import_history"
SERVICE_GET_SUMMARY = "get_summary"
ATTR_GATEWAY = "gateway"
ATTR_COMMAND = "command"
ATTR_TARGET = "target"
ATTR_TARGET_ID = "target_id"
ATTR_PARAMS = "params"
ATTR_TRIGGER_ID = "trigger_id"
ATTR_TRIGGER = "trigger"
SERVICE_SEND_GATEWAY_COMMAND = "send_gateway_command"
SERVICE_LIST_TRIGGERS = "list_triggers"
SERVICE_GET_TRIGGER = "get_trigger"
SERVICE_CREATE_TRIGGER = "create_trigger"
SERVICE_UPDATE_TRIGGER = "update_trigger"
SERVICE_DELETE_TRIGGER = "delete_trigger"
# EKM answers at most this many periods per request; the client pages, but an action
# returning more than this in one response would be unwieldy.
MAX_SUMMARY_PERIODS = 10_000
# Period lengths, for that estimate (a month as its average).
PERIOD_S = {
    Report.QUARTER_HOUR: 900,
    Report.HOUR: 3600,
    Report.DAY: 86400,
    Report.WEEK: 7 * 86400,
    Report.MONTH: 30.44 * 86400,
}

IMPORT_HISTORY_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_METERS): vol.All(cv.ensure_list, [cv.string]),
        vol.Required(ATTR_START): cv.datetime,
    }
)
GET_SUMMARY_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_METERS): vol.All(cv.ensure_list, [cv.string]),
        vol.Required(ATTR_REPORT): vol.In([r.value for r in Report]),
        vol.Required(ATTR_START): cv.datetime,
        vol.Required(ATTR_END): cv.datetime,
        vol.Optional(ATTR_FIELDS): vol.All(cv.ensure_list, [cv.string]),
    }
)


def _trigger_id(value: object) -> str:
    """EKM's trigger id: 32 hex digits (dashes, as in a UUID, are dropped)."""
    text = str(value).strip().replace("-", "").lower()
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise vol.Invalid("a trigger id is 32 hexadecimal digits")
    return text


GATEWAY_SCHEMA = {vol.Required(ATTR_GATEWAY): cv.string}
TRIGGER_ID_SCHEMA = {vol.Required(ATTR_TRIGGER_ID): _trigger_id}
TRIGGER_OBJECT_SCHEMA = {vol.Required(ATTR_TRIGGER): dict}
SEND_GATEWAY_COMMAND_SCHEMA = vol.Schema(
    {
        **GATEWAY_SCHEMA,
        vol.Required(ATTR_COMMAND): cv.string,
        vol.Optional(ATTR_TARGET, default="meter"): cv.string,
        vol.Required(ATTR_TARGET_ID): cv.string,
        vol.Optional(ATTR_PARAMS, default={}): dict,
    }
)
# Trigger actions: (schema, what they do with the gateway's control client, response mode).
type TriggerCall = Callable[[EkmControlClient, str, ServiceCall], Awaitable[JsonObjectType]]


async def _list_triggers(control: EkmControlClient, mac: str, call: ServiceCall) -> JsonObjectType:
    return {"triggers": cast(list[JsonValueType], await control.list_triggers(mac))}


async def _get_trigger(control: EkmControlClient, mac: str, call: ServiceCall) -> JsonObjectType:
    return {"trigger": await control.get_trigger(call.data[ATTR_TRIGGER_ID])}


async def _create_trigger(control: EkmControlClient, mac: str, call: ServiceCall) -> JsonObjectType:
    return {"trigger": await control.create_trigger(mac, call.data[ATTR_TRIGGER])}


async def _update_trigger(control: EkmControlClient, mac: str, call: ServiceCall) -> JsonObjectType:
    trigger = await control.update_trigger(call.data[ATTR_TRIGGER_ID], call.data[ATTR_TRIGGER])
    return {"trigger": trigger}


async def _delete_trigger(control: EkmControlClient, mac: str, call: ServiceCall) -> JsonObjectType:
    answer = await control.delete_trigger(call.data[ATTR_TRIGGER_ID])
    return {"trigger_id": call.data[ATTR_TRIGGER_ID], "response": answer}


TRIGGER_SERVICES: dict[str, tuple[vol.Schema, TriggerCall, SupportsResponse]] = {
    SERVICE_LIST_TRIGGERS: (vol.Schema(GATEWAY_SCHEMA), _list_triggers, SupportsResponse.ONLY),
    SERVICE_GET_TRIGGER: (
        vol.Schema({**GATEWAY_SCHEMA, **TRIGGER_ID_SCHEMA}),
        _get_trigger,
        SupportsResponse.ONLY,
    ),
    SERVICE_CREATE_TRIGGER: (
        vol.Schema({**GATEWAY_SCHEMA, **TRIGGER_OBJECT_SCHEMA}),
        _create_trigger,
        SupportsResponse.OPTIONAL,
    ),
    SERVICE_UPDATE_TRIGGER: (
        vol.Schema({**GATEWAY_SCHEMA, **TRIGGER_ID_SCHEMA, **TRIGGER_OBJECT_SCHEMA}),
        _update_trigger,
        SupportsResponse.OPTIONAL,
    ),
    SERVICE_DELETE_TRIGGER: (
        vol.Schema({**GATEWAY_SCHEMA, **TRIGGER_ID_SCHEMA}),
        _delete_trigger,
        SupportsResponse.OPTIONAL,
    ),
}


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""
    service.async_register_platform_entity_service(
        hass,
        DOMAIN,
        SERVICE_SET_RELAY,
        entity_domain=Platform.SWITCH,
        schema={
            vol.Required(ATTR_STATE): vol.In(["on", "off"]),
            vol.Optional(ATTR_DURATION, default=0): vol.All(
                vol.Coerce(int), vol.Range(min=0, max=9999)
            ),
        },
        func="async_handle_set_relay",
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_IMPORT_HISTORY,
        _async_import_history,
        schema=IMPORT_HISTORY_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_GET_SUMMARY,
        _async_get_summary,
        schema=GET_SUMMARY_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_SEND_GATEWAY_COMMAND,
        _async_send_gateway_command,
        schema=SEND_GATEWAY_COMMAND_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    for name, (schema, run, supports) in TRIGGER_SERVICES.items():
        hass.services.async_register(
            DOMAIN,
            name,
            partial(_async_trigger_action, run),
            schema=schema,
            supports_response=supports,
        )


def _utc(value: datetime) -> datetime:
    """A time from the action (naive = Home Assistant's time zone) in UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt_util.get_default_time_zone())
    return dt_util.as_utc(value)


def _meters_by_entry(
    hass: HomeAssistant, device_ids: Sequence[str]
) -> dict[str, tuple[EkmConfigEntry, list[str]]]:
    """The cloud entries of the chosen meter devices, with each entry's addresses."""
    registry = dr.async_get(hass)
    chosen: dict[str, tuple[EkmConfigEntry, list[str]]] = {}
    for device_id in device_ids:
        device = registry.async_get(device_id)
        address = (
            next((i[1] for i in device.identifiers if i[0] == DOMAIN), None) if device else None
        )
        entry: EkmConfigEntry | None = (
            hass.config_entries.async_get_entry(device.primary_config_entry)
            if device and device.primary_config_entry
            else None
        )
        if device is None or address is None or entry is None or entry.domain != DOMAIN:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="not_a_meter",
                translation_placeholders={"device": device_id},
            )
        name = device.name_by_user or device.name or address
        if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_RS485:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="no_cloud_history",
                translation_placeholders={"meter": name},
            )
        if entry.state is not ConfigEntryState.LOADED:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="entry_not_loaded",
                translation_placeholders={"entry": entry.title},
            )
        if address not in entry.runtime_data.coordinator.data.devices:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="not_a_meter",
                translation_placeholders={"device": name},
            )
        chosen.setdefault(entry.entry_id, (entry, []))[1].append(address)
    return chosen


async def _async_import_history(call: ServiceCall) -> ServiceResponse:
    """Import the chosen meters' history again, from ``start`` on."""
    start = _utc(call.data[ATTR_START])
    if start >= dt_util.utcnow():
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="start_in_future")
    hours = 0
    for entry, addresses in _meters_by_entry(call.hass, call.data[ATTR_METERS]).values():
        history = entry.runtime_data.history
        if history is None:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="history_off",
                translation_placeholders={"entry": entry.title},
            )
        try:
            hours += await history.async_reimport(addresses, start)
        except EkmError as err:
            raise control_error(call.hass, entry, err) from err
    return {"hours_imported": hours}


async def _async_get_summary(call: ServiceCall) -> ServiceResponse:
    """EKM's summary rows of the chosen meters (for scripts: "kWh used yesterday")."""
    start, end = _utc(call.data[ATTR_START]), _utc(call.data[ATTR_END])
    if end <= start:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="end_before_start")
    chosen = _meters_by_entry(call.hass, call.data[ATTR_METERS])
    report = Report(call.data[ATTR_REPORT])
    meters = sum(len(addresses) for _, addresses in chosen.values())
    expected = meters * (
        1 if report is Report.RANGE else (end - start).total_seconds() / PERIOD_S[report]
    )
    if expected > MAX_SUMMARY_PERIODS:  # say so before asking EKM for it all
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="too_many_periods",
            translation_placeholders={"count": str(int(expected)), "max": str(MAX_SUMMARY_PERIODS)},
        )
    periods: list[JsonObjectType] = []
    for entry, addresses in chosen.values():
        client = entry.runtime_data.summary
        assert client is not None  # every loaded cloud entry has one
        try:
            found = await client.async_summary(
                addresses,
                report,
                start,
                end,
                timezone=call.hass.config.time_zone,
                fields=call.data.get(ATTR_FIELDS),
            )
        except EkmError as err:
            raise control_error(call.hass, entry, err) from err
        periods.extend(
            {
                "meter": p.address,
                "start": p.start.isoformat(),
                "end": p.end.isoformat(),
                **p.values,
            }
            for p in found
        )
    periods.sort(key=lambda p: (str(p["start"]), str(p["meter"])))
    return {"periods": cast(list[JsonValueType], periods)}


def _gateway(hass: HomeAssistant, device_id: str) -> tuple[EkmConfigEntry, str]:
    """The loaded EKM Push account entry of a Push3 gateway device, and its MAC."""
    device = dr.async_get(hass).async_get(device_id)
    if device is not None:
        idents = {i[1] for i in device.identifiers if i[0] == DOMAIN}
        for entry_id in device.config_entries:
            entry: EkmConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
            if entry is None or entry.domain != DOMAIN:
                continue
            if entry.state is not ConfigEntryState.LOADED:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="entry_not_loaded",
                    translation_placeholders={"entry": entry.title},
                )
            gateways = entry.runtime_data.coordinator.data.gateways
            if (mac := next((m for m in sorted(idents) if m in gateways), None)) is not None:
                return entry, mac
    name = (device.name_by_user or device.name) if device else None
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="not_a_gateway",
        translation_placeholders={"device": name or device_id},
    )


def _control(entry: EkmConfigEntry) -> EkmControlClient:
    control = entry.runtime_data.control
    assert control is not None  # every loaded cloud entry has one
    return control


async def _async_send_gateway_command(call: ServiceCall) -> ServiceResponse:
    """Send any Gateway Settings API command; EKM's answer (``msg_id``...) is the response."""
    entry, mac = _gateway(call.hass, call.data[ATTR_GATEWAY])
    try:
        receipt = await _control(entry).send_command(
            mac,
            call.data[ATTR_COMMAND],
            call.data[ATTR_TARGET],
            call.data[ATTR_TARGET_ID],
            call.data[ATTR_PARAMS],
        )
    except ValueError as err:  # a meter target whose id is not a meter address
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_parameters",
            translation_placeholders={"error": str(err)},
        ) from err
    except EkmError as err:
        raise control_error(call.hass, entry, err) from err
    return cast(JsonObjectType, receipt.raw)


async def _async_trigger_action(run: TriggerCall, call: ServiceCall) -> ServiceResponse:
    """A Trigger API action on one gateway's triggers (EKM's trigger JSON passed through)."""
    entry, mac = _gateway(call.hass, call.data[ATTR_GATEWAY])
    try:
        return await run(_control(entry), mac, call)
    except EkmError as err:
        raise control_error(call.hass, entry, err) from err
