"""Diagnostics: settings, devices and the newest reading of each meter, secrets redacted.

An entry's diagnostics cover everything; a device's (the *Download diagnostics* link on
the device page) cover one meter, gateway or RS-485 bus.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_API_KEY, CONF_PASSWORD
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util

from . import EkmConfigEntry, bus_identifier
from .const import CONF_API_TOKEN, CONF_GATEWAY_KEYS, CONF_LAN_KEY, CONF_PASSWORDS, DOMAIN
from .coordinator import EkmLanCoordinator, EkmRs485Coordinator
from .history import MeterHistory
from .pyekm import MeterReading
from .pyekm.redact import redact_text
from .statistics import EXPORT, IMPORT, statistic_id

TO_REDACT = {
    CONF_API_KEY,
    CONF_API_TOKEN,
    CONF_LAN_KEY,
    CONF_PASSWORD,
    "key",
    "gateway_keys",
    "token",
    "passwords",
}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: EkmConfigEntry
) -> dict[str, Any]:
    """Diagnostics for a config entry."""
    coordinator = entry.runtime_data.coordinator
    client = entry.runtime_data.client
    data = coordinator.data
    result = {
        "entry": {
            "title": entry.title,
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": async_redact_data(dict(entry.options), TO_REDACT),
        },
        "server": client.server if client else None,
        "requests": client.requests if client else None,
        "bus": _bus(entry),
        "lan": _lan(entry),
        "last_update_success": coordinator.last_update_success,
        "update_interval_s": (
            coordinator.update_interval.total_seconds() if coordinator.update_interval else None
        ),
        "push": entry.runtime_data.push.stats() if entry.runtime_data.push else None,
        "history": _history(entry),
        "control": _control(entry),
        "gateway_status": (
            {mac: asdict(status) for mac, status in gateway_status.data.items()}
            if (gateway_status := entry.runtime_data.gateway_status)
            else None
        ),
        "gateways": {
            mac: {"name": gw.name, "meters": list(gw.meters)} for mac, gw in data.gateways.items()
        },
        "devices": {
            address: {
                "kind": str(info.kind),
                "gateway": info.gateway_mac,
                "stale": address in data.stale,
                "reading": _reading(data.readings.get(address)),
            }
            for address, info in data.devices.items()
        },
    }
    return _scrubbed(entry, result)


async def async_get_device_diagnostics(
    hass: HomeAssistant, entry: EkmConfigEntry, device: dr.DeviceEntry
) -> dict[str, Any]:
    """Diagnostics for one device: a meter (or ioStack), a Push3 gateway or an RS-485 bus."""
    data = entry.runtime_data.coordinator.data
    idents = [ident for domain, ident in device.identifiers if domain == DOMAIN]
    result: dict[str, Any] = {
        "device": {
            "name": device.name,
            "name_by_user": device.name_by_user,
            "model": device.model,
            "model_id": device.model_id,
            "sw_version": device.sw_version,
            "serial_number": device.serial_number,
            "disabled_by": device.disabled_by,
        },
        "last_update_success": entry.runtime_data.coordinator.last_update_success,
    }
    gateways = set(data.gateways) | set(entry.options.get(CONF_GATEWAY_KEYS, {}).values())
    for ident in idents:
        if ident == bus_identifier(entry):
            result["bus"] = _bus(entry)
            result["lan"] = _lan(entry)
        elif ident in gateways:
            result["gateway"] = _gateway(entry, ident)
        else:
            result["meter"] = _meter(entry, ident)
    return _scrubbed(entry, result)


def _meter(entry: EkmConfigEntry, address: str) -> dict[str, Any]:
    """One meter: what the account says, its newest reading, errors, history, relays."""
    coordinator = entry.runtime_data.coordinator
    data = coordinator.data
    info = data.devices.get(address)
    interval_ms = coordinator.report_interval_ms.get(address)
    errors = coordinator.errors if isinstance(coordinator, EkmRs485Coordinator) else {}
    relays = entry.runtime_data.relays
    pending = relays.diagnostics().get("pending", {}) if relays else {}
    return {
        "address": address,
        "included": info is not None,  # False: excluded in the options (or gone)
        "kind": str(info.kind) if info else None,
        "gateway": info.gateway_mac if info else None,
        "stale": address in data.stale,
        "report_interval_s": interval_ms / 1000 if interval_ms is not None else None,
        "reading": _reading(data.readings.get(address)),
        "error": errors.get(address),
        "last_error": (
            None if coordinator.last_update_success else _error(coordinator.last_exception)
        ),
        "history": _meter_history(entry, address),
        "relays_pending": {
            name: command for name, command in pending.items() if name.startswith(f"{address} ")
        },
    }


def _gateway(entry: EkmConfigEntry, mac: str) -> dict[str, Any]:
    """One Push3 gateway: its meters, its push stream and what EKM says of it (GStat)."""
    data = entry.runtime_data.coordinator.data
    gateway = data.gateways.get(mac)
    meters = set(gateway.meters if gateway else ()) | {
        address for address, info in data.devices.items() if info.gateway_mac == mac
    }
    push = entry.runtime_data.push
    push_state: dict[str, Any] | None = None
    if push is not None and mac in push.gateways:
        stats = push.stats()
        streams = stats["gateways"]
        assert isinstance(streams, dict)
        push_state = {"server": stats["server"], **streams[mac]}
    gateway_status = entry.runtime_data.gateway_status
    status = gateway_status.data.get(mac) if gateway_status else None
    return {
        "mac": mac,
        "name": gateway.name if gateway else None,
        "on_account": gateway is not None,
        "meters": {
            address: {
                "included": address in data.devices,
                "stale": address in data.stale,
                "last_reading": (
                    reading.timestamp.isoformat()
                    if (reading := data.readings.get(address))
                    else None
                ),
            }
            for address in sorted(meters)
        },
        "push": push_state,
        "gateway_status": asdict(status) if status else None,
    }


def _reading(reading: MeterReading | None) -> dict[str, Any] | None:
    if reading is None:
        return None
    return {
        "timestamp_ms": reading.timestamp_ms,
        "age_s": round(dt_util.utcnow().timestamp() - reading.timestamp_ms / 1000, 1),
        "source": str(reading.source),
        "protocol": reading.protocol,
        "values": dict(reading.values),
    }


def _error(err: BaseException | None) -> str | None:
    return f"{type(err).__name__}: {err}" if err is not None else None


def _scrubbed(entry: EkmConfigEntry, result: dict[str, Any]) -> dict[str, Any]:
    """Belt and braces: no secret of this entry may appear anywhere in the output."""
    secrets = [str(v) for k, v in entry.data.items() if k in TO_REDACT and isinstance(v, str)]
    secrets += list(entry.options.get(CONF_GATEWAY_KEYS, {}))
    secrets += [str(v) for v in entry.data.get(CONF_PASSWORDS, {}).values() if v]
    scrubbed: dict[str, Any] = _scrub(result, secrets)
    return scrubbed


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat() if ms is not None else None


def _history(entry: EkmConfigEntry) -> dict[str, Any] | None:
    """Where each meter's history import stands: the last imported hour per statistic."""
    history = entry.runtime_data.history
    if history is None:
        return None
    summary = entry.runtime_data.summary
    return {
        "last_update_success": history.last_update_success,
        "rows_written": history.rows_written,
        "requests": summary.requests if summary else None,
        "v2_available": summary.v2_available if summary else None,
        "statistics": {
            statistic_id(DOMAIN, address, kind): _statistic(meter)
            for address, meter in history.meters.items()
            for kind in (IMPORT, EXPORT)
        },
    }


def _statistic(meter: MeterHistory) -> dict[str, Any]:
    return {"last_hour": _iso(meter.last_hour_ms), "history_start": _iso(meter.started_ms)}


def _meter_history(entry: EkmConfigEntry, address: str) -> dict[str, Any] | None:
    """One meter's history import, if history is imported and the meter has any."""
    history = entry.runtime_data.history
    if history is None or (meter := history.meters.get(address)) is None:
        return None
    return {
        "last_update_success": history.last_update_success,
        "imported_until": meter.imported_until.isoformat() if meter.imported_until else None,
        "progress": meter.progress(int(dt_util.utcnow().timestamp() * 1000)),
        "statistics": {
            statistic_id(DOMAIN, address, kind): _statistic(meter) for kind in (IMPORT, EXPORT)
        },
    }


def _control(entry: EkmConfigEntry) -> dict[str, Any] | None:
    """Relay commands (pending, confirmed) and whether an API token is set (not the token)."""
    relays = entry.runtime_data.relays
    control = entry.runtime_data.control
    if relays is None and control is None:
        return None
    return {
        "api_token": bool(control and control.has_token),
        "requests": control.requests if control else None,
        "relays": relays.diagnostics() if relays else None,
    }


def _lan(entry: EkmConfigEntry) -> dict[str, Any] | None:
    """A Push3 on the LAN: where, how often asked, the last error, each meter's read age."""
    client = entry.runtime_data.lan
    coordinator = entry.runtime_data.coordinator
    if client is None or not isinstance(coordinator, EkmLanCoordinator):
        return None
    now_ms = dt_util.utcnow().timestamp() * 1000
    return {
        "host": client.host,
        "requests": client.requests,
        "last_error": coordinator.last_error,
        "meters_served": sorted(coordinator.known),
        "read_age_s": {
            address: round((now_ms - reading.timestamp_ms) / 1000, 1)
            for address, reading in coordinator.data.readings.items()
        },
    }


def _bus(entry: EkmConfigEntry) -> dict[str, Any] | None:
    bus = entry.runtime_data.bus
    if bus is None:
        return None
    coordinator = entry.runtime_data.coordinator
    return {
        "stats": asdict(bus.stats),
        "connected": bus.connected,
        "errors": getattr(coordinator, "errors", {}),
    }
