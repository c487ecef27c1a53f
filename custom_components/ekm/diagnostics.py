"""Diagnostics: settings, devices and the newest reading of each meter, secrets redacted."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_API_KEY, CONF_PASSWORD
from homeassistant.core import HomeAssistant

from . import EkmConfigEntry
from .const import CONF_API_TOKEN, CONF_GATEWAY_KEYS, DOMAIN
from .pyekm.redact import redact_text
from .statistics import EXPORT, IMPORT, statistic_id

TO_REDACT = {
    CONF_API_KEY,
    CONF_API_TOKEN,
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
                "reading": (
                    {
                        "timestamp_ms": reading.timestamp_ms,
                        "source": str(reading.source),
                        "protocol": reading.protocol,
                        "values": dict(reading.values),
                    }
                    if (reading := data.readings.get(address))
                    else None
                ),
            }
            for address, info in data.devices.items()
        },
    }
    # Belt and braces: no secret of this entry may appear anywhere in the output.
    secrets = [str(v) for k, v in entry.data.items() if k in TO_REDACT and isinstance(v, str)]
    secrets += list(entry.options.get(CONF_GATEWAY_KEYS, {}))
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
            statistic_id(DOMAIN, address, kind): {
                "last_hour": (
                    datetime.fromtimestamp(meter.last_hour_ms / 1000, UTC).isoformat()
                    if meter.last_hour_ms is not None
                    else None
                ),
                "history_start": (
                    datetime.fromtimestamp(meter.started_ms / 1000, UTC).isoformat()
                    if meter.started_ms is not None
                    else None
                ),
            }
            for address, meter in history.meters.items()
            for kind in (IMPORT, EXPORT)
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
