"""Push updates from EKM's MQTT broker: one stream per Push3 gateway key.

EKM's broker takes the gateway key as the MQTT username, so every key gets its own
connection. Pushed readings go straight into the coordinator. After every (re)connect
the gap since the newest reading seen is filled from the Realtime API *before* live
messages are applied (the stream holds them meanwhile), so readings arrive in order and
none is lost or applied twice. While a gateway's stream is up, its meters drop out of
the Realtime poll, which then only runs as a safety net.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
import math
import ssl
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.util import dt as dt_util
from homeassistant.util.ssl import get_default_context

from .const import DOMAIN, LOGGER
from .coordinator import EkmCloudCoordinator
from .pyekm import EkmAuthError, EkmCloudClient, EkmError, MeterReading
from .pyekm.mqtt import (
    Backoff,
    EkmPushStream,
    PushEvent,
    SummaryReading,
    create_ssl_context,
)
from .pyekm.redact import mask

# After the broker refuses a key, try again this often (the key may be re-enabled).
REJECTED_KEY_RETRY_S = 900
DEFAULT_INTERVAL_S = 60  # EKM's data interval
# Reconnect backoff: exponential with jitter from this, up to BACKOFF_MAX_S.
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 300.0
# Gap fill asks for at least this many reads per meter (clocks of gateway and Home
# Assistant may disagree); ``since`` keeps the answer to the reads really missed.
MIN_GAP_COUNT = 60


def signal_push_state(entry_id: str) -> str:
    """Dispatcher signal for push connection changes of one entry."""
    return f"{DOMAIN}_{entry_id}_push_state"


def issue_id(entry_id: str, mac: str) -> str:
    """Repair issue id for a gateway key the broker refused."""
    return f"gateway_key_rejected_{entry_id}_{mac}"


@dataclass(slots=True, kw_only=True)
class GatewayPush:
    """The push state of one gateway key."""

    key: str
    mac: str
    connected: bool = False
    rejected: bool = False
    down_logged: bool = False
    seen: set[str] = field(default_factory=set)  # meters whose readings came this way
    stream: EkmPushStream | None = None


async def async_create_ssl_context(hass: HomeAssistant, ca_file: str | None) -> ssl.SSLContext:
    """A verifying TLS context; an extra CA (a development broker's) is loaded off the loop."""
    if not ca_file:
        return get_default_context()
    return await hass.async_add_executor_job(create_ssl_context, ca_file)


CHECK_TIMEOUT_S = 20


async def async_check_gateway_key(key: str, *, server: str, ssl_context: ssl.SSLContext) -> None:
    """Connect and subscribe once with the key; raises EkmAuthError or EkmConnectionError."""
    stream = EkmPushStream(
        key, server=server, ssl_context=ssl_context, connect_timeout=CHECK_TIMEOUT_S
    )
    async with asyncio.timeout(CHECK_TIMEOUT_S + 5), stream.connect():
        pass


class EkmPushManager:
    """Runs the MQTT streams of one config entry."""

    def __init__(
        self,
        hass: HomeAssistant,
        coordinator: EkmCloudCoordinator,
        client: EkmCloudClient,
        gateways: dict[str, str],
        *,
        server: str,
        ssl_context: ssl.SSLContext,
    ) -> None:
        self.hass = hass
        self.coordinator = coordinator
        self.client = client
        self.server = server
        self.ssl_context = ssl_context
        self.gateways = {mac: GatewayPush(key=key, mac=mac) for key, mac in gateways.items()}
        self.summaries: dict[str, SummaryReading] = {}
        # Called when a summary message arrives (the history importer reads Summary then).
        self.on_summary: Callable[[], Coroutine[Any, Any, None]] | None = None
        self.gap_fills = 0
        self.gap_readings = 0
        self._entry = coordinator.config_entry
        self._pending: list[MeterReading] = []

    @callback
    def async_start(self) -> None:
        """Start one background task per gateway key (cancelled on unload and stop)."""
        for gateway in self.gateways.values():
            self._entry.async_create_background_task(
                self.hass, self._async_run(gateway), f"{DOMAIN} push {gateway.mac}"
            )

    async def _async_run(self, gateway: GatewayPush) -> None:
        while True:
            gateway.stream = EkmPushStream(
                gateway.key, server=self.server, ssl_context=self.ssl_context
            )
            try:
                await gateway.stream.run_forever(
                    lambda event: self._async_on_event(gateway, event),
                    on_connect=lambda: self._async_on_connect(gateway),
                    on_disconnect=lambda err: self._async_on_disconnect(gateway, err),
                    backoff=Backoff(initial=BACKOFF_INITIAL_S, maximum=BACKOFF_MAX_S),
                )
            except EkmAuthError:
                self._set_connected(gateway, False)
                if not gateway.rejected:
                    gateway.rejected = True
                    LOGGER.warning(
                        "EKM's MQTT broker refused the key of gateway %s; "
                        "readings come from polling until the key is fixed",
                        gateway.mac,
                    )
                    ir.async_create_issue(
                        self.hass,
                        DOMAIN,
                        issue_id(self._entry.entry_id, gateway.mac),
                        is_fixable=False,
                        severity=ir.IssueSeverity.ERROR,
                        translation_key="gateway_key_rejected",
                        translation_placeholders={
                            "gateway": gateway.mac,
                            "key": mask(gateway.key),
                            "entry": self._entry.title,
                        },
                    )
                await asyncio.sleep(REJECTED_KEY_RETRY_S)

    # --- callbacks from the stream ------------------------------------------------------

    async def _async_on_connect(self, gateway: GatewayPush) -> None:
        if gateway.rejected:
            gateway.rejected = False
            ir.async_delete_issue(self.hass, DOMAIN, issue_id(self._entry.entry_id, gateway.mac))
        if gateway.down_logged:
            LOGGER.info("EKM push stream for gateway %s is back", gateway.mac)
            gateway.down_logged = False
        else:
            LOGGER.debug("EKM push stream for gateway %s connected", gateway.mac)
        # Fill the gap before live messages are applied: the stream waits for us.
        self._flush()
        await self._async_fill_gap(gateway)
        self._set_connected(gateway, True)

    async def _async_on_disconnect(self, gateway: GatewayPush, err: EkmError) -> None:
        self._set_connected(gateway, False)
        if not gateway.down_logged:
            LOGGER.warning(
                "EKM push stream for gateway %s is down (%s); reconnecting, polling meanwhile",
                gateway.mac,
                err,
            )
            gateway.down_logged = True

    async def _async_on_event(self, gateway: GatewayPush, event: PushEvent) -> None:
        if isinstance(event, SummaryReading):
            self.summaries[event.address] = event
            if self.on_summary is not None:
                await self.on_summary()
            return
        gateway.seen.add(event.address)
        # A message's meters arrive one event at a time, back to back: apply them as
        # one update once the stream yields (not one full update per meter).
        if not self._pending:
            self.hass.loop.call_soon(self._flush)
        self._pending.append(event)

    @callback
    def _flush(self) -> None:
        readings, self._pending = self._pending, []
        self.coordinator.async_push_readings(readings)

    # --- gap filling ----------------------------------------------------------------------

    def meters_of(self, gateway: GatewayPush) -> set[str]:
        """The meters a gateway reports (per the account, and as seen on its stream)."""
        devices = self.coordinator.data.devices
        return {a for a, d in devices.items() if d.gateway_mac == gateway.mac} | {
            a for a in gateway.seen if a in devices
        }

    async def _async_fill_gap(self, gateway: GatewayPush) -> None:
        meters = sorted(self.meters_of(gateway))
        readings = self.coordinator.data.readings
        known = [readings[a].timestamp_ms for a in meters if a in readings]
        if not meters or not known:
            return
        since = min(known)
        gap_s = max(0.0, dt_util.utcnow().timestamp() - since / 1000)
        count = min(1000, max(MIN_GAP_COUNT, math.ceil(gap_s / DEFAULT_INTERVAL_S) + 2))
        try:
            read_sets = await self.client.async_read_meters(meters, count=count, since_ms=since)
        except EkmError as err:
            LOGGER.debug("Could not fill the push gap of gateway %s: %s", gateway.mac, err)
            return
        self.gap_fills += 1
        fresh = [
            r
            for rs in read_sets.values()
            for r in rs.readings
            if r.address not in readings or r.timestamp_ms > readings[r.address].timestamp_ms
        ]
        self.gap_readings += len(fresh)
        self.coordinator.async_apply_in_order(fresh)

    # --- state ----------------------------------------------------------------------------------

    def _set_connected(self, gateway: GatewayPush, connected: bool) -> None:
        if gateway.connected == connected:
            return
        gateway.connected = connected
        self.coordinator.push_covered = self.covered()
        async_dispatcher_send(self.hass, signal_push_state(self._entry.entry_id))

    def covered(self) -> frozenset[str]:
        """Meters whose gateway's stream is up (the poll skips them)."""
        return frozenset(
            a for gw in self.gateways.values() if gw.connected for a in self.meters_of(gw)
        )

    def stats(self) -> dict[str, object]:
        """Diagnostics: per gateway state and counters (no keys)."""
        return {
            "server": self.server,
            "gap_fills": self.gap_fills,
            "gap_readings": self.gap_readings,
            "gateways": {
                mac: {
                    "key": mask(gw.key),
                    "connected": gw.connected,
                    "rejected": gw.rejected,
                    "meters": sorted(self.meters_of(gw)),
                    "stats": asdict(gw.stream.stats) if gw.stream else None,
                }
                for mac, gw in self.gateways.items()
            },
            "summaries": len(self.summaries),
        }
