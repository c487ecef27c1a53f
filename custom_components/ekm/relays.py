"""Relay control, whatever the transport.

On an RS-485 bus a relay command is acknowledged by the meter and read back at once. Through
the cloud, EKM's Gateway Settings API only promises that the command was *sent* to the Push3
(ekm-cloud-api.md §6.1): the gateway applies it later and the meter's ``State_Out`` in a
later reading is the only confirmation. So a cloud relay shows the requested state as
pending until a reading newer than the command confirms it (with push on, the next
message; otherwise Realtime is asked again soon); if none does within ``CONFIRM_TIMEOUT``
(or two of the meter's report intervals) the switch returns to the state read and the
owner is told once, in the log and with a repair issue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util

from .const import DOMAIN, LOGGER
from .control import control_error
from .coordinator import EkmCloudCoordinator, EkmRs485Coordinator
from .pyekm import EkmError, MeterReading
from .pyekm.catalog import relay_states
from .pyekm.control import EkmControlClient

if TYPE_CHECKING:
    from . import EkmConfigEntry

# A cloud relay command not confirmed by a reading within this long is reported; for a
# meter that reports less often, two of its report intervals (and a margin) instead.
CONFIRM_TIMEOUT: Final = timedelta(minutes=3)
CONFIRM_MARGIN_S: Final = 30
# Seconds after a cloud command at which Realtime is asked again for the meter. Without
# push, soon and then less often (each is one request; EKM rate-limits); with push the
# gateway's next message confirms it, and two late polls are the safety net.
CONFIRM_POLLS_S: Final = (10, 20, 40, 60, 90, 120, 150)
CONFIRM_POLLS_PUSH_S: Final = (60, 120)
_ISSUE_PREFIX: Final = "relay_unconfirmed"

type RelayKey = tuple[str, int]


def relay_state(reading: MeterReading | None, relay: int) -> bool | None:
    """Whether relay 1 or 2 is closed according to a reading's ``State_Out``."""
    state_out = reading.number("State_Out") if reading else None
    states = relay_states(int(state_out)) if state_out is not None else None
    return None if states is None else states[relay - 1]


def unconfirmed_issue_id(entry_id: str, address: str, relay: int) -> str:
    """The repair issue of a relay command no reading confirmed."""
    return f"{_ISSUE_PREFIX}_{entry_id}_{address}_{relay}"


class RelayControl:
    """Switches relays of one entry's meters; entities subscribe to pending changes."""

    #: True where a command is confirmed only by a later reading (the cloud).
    confirms_later = False

    def __init__(self) -> None:
        self._listeners: dict[RelayKey, list[CALLBACK_TYPE]] = {}

    async def async_set(self, address: str, relay: int, on: bool, duration: int = 0) -> None:
        """Close (on) or open relay 1 or 2, held (0) or for 1-9999 seconds."""
        raise NotImplementedError

    def pending(self, address: str, relay: int) -> bool | None:
        """The requested state while a command waits for confirmation, else None."""
        return None

    @callback
    def async_subscribe(self, address: str, relay: int, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call ``listener`` when the relay's pending state changes; returns unsubscribe."""
        listeners = self._listeners.setdefault((address, relay), [])
        listeners.append(listener)
        return partial(listeners.remove, listener)

    @callback
    def _notify(self, key: RelayKey) -> None:
        for listener in list(self._listeners.get(key, ())):
            listener()

    def diagnostics(self) -> dict[str, Any]:
        """What diagnostics show of relay control."""
        return {}


class BusRelays(RelayControl):
    """Relays on an RS-485 bus: the meter acknowledges, the coordinator reads it back."""

    def __init__(self, coordinator: EkmRs485Coordinator) -> None:
        super().__init__()
        self.coordinator = coordinator

    async def async_set(self, address: str, relay: int, on: bool, duration: int = 0) -> None:
        """Write the relay on the bus (with the meter's password) and read it back."""
        bus = self.coordinator.bus
        await self.coordinator.async_command(
            address,
            lambda poll_address, password: bus.set_relay(
                poll_address, relay, on, duration, password=password
            ),
        )


@dataclass(slots=True, kw_only=True)
class _Pending:
    on: bool
    duration: int
    after_ms: int  # the meter's newest reading when sent: a confirmation is newer
    sent: datetime
    msg_id: str | None
    timeout_s: float
    timers: list[CALLBACK_TYPE] = field(default_factory=list)


class CloudRelays(RelayControl):
    """Relays of meters behind Push3 gateways, through EKM's Gateway Settings API."""

    confirms_later = True

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EkmConfigEntry,
        coordinator: EkmCloudCoordinator,
        control: EkmControlClient,
    ) -> None:
        super().__init__()
        self.hass = hass
        self.entry = entry
        self.coordinator = coordinator
        self.control = control
        self._pending: dict[RelayKey, _Pending] = {}
        self.confirmed = 0
        self.unconfirmed = 0
        entry.async_on_unload(coordinator.async_add_listener(self._check))
        entry.async_on_unload(self._cancel_all)

    def pending(self, address: str, relay: int) -> bool | None:
        """The requested state until a reading confirms it."""
        waiting = self._pending.get((address, relay))
        return None if waiting is None else waiting.on

    async def async_set(self, address: str, relay: int, on: bool, duration: int = 0) -> None:
        """Send ``SetRelay`` to the meter's gateway; pending until a reading confirms it."""
        device = self.coordinator.data.devices.get(address)
        mac = device.gateway_mac if device else None
        if mac is None:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="no_gateway",
                translation_placeholders={"meter": self._name(address)},
            )
        try:
            receipt = await self.control.set_relay(mac, address, relay, on, duration)
        except EkmError as err:
            raise control_error(self.hass, self.entry, err) from err
        key = (address, relay)
        self._cancel(key)
        known = self.coordinator.data.readings.get(address)
        interval_s = self.coordinator.report_interval_ms.get(address, 0) / 1000
        waiting = _Pending(
            on=on,
            duration=duration,
            after_ms=known.timestamp_ms if known else 0,
            sent=dt_util.utcnow(),
            msg_id=receipt.msg_id,
            timeout_s=max(CONFIRM_TIMEOUT.total_seconds(), 2 * interval_s + CONFIRM_MARGIN_S),
        )
        self._pending[key] = waiting
        pushed = address in self.coordinator.push_covered
        polls: list[float] = list(CONFIRM_POLLS_PUSH_S if pushed else CONFIRM_POLLS_S)
        # A meter that reports less often is asked again after each of its next reports.
        polls += [n * interval_s + 10 for n in (1, 2) if n * interval_s + 10 > polls[-1]]
        for delay in polls:
            waiting.timers.append(async_call_later(self.hass, delay, partial(self._poll, key)))
        # A timed command that ends before the timeout is over when the relay reverts.
        timed = 0 < duration < waiting.timeout_s
        waiting.timers.append(
            async_call_later(
                self.hass, duration if timed else waiting.timeout_s, partial(self._expire, key)
            )
        )
        LOGGER.debug(
            "Relay %s of meter %s: %s sent to gateway %s (message %s), waiting for a reading",
            relay,
            address,
            "close" if on else "open",
            mac,
            receipt.msg_id,
        )
        self._notify(key)

    @callback
    def _poll(self, key: RelayKey, _now: datetime) -> None:
        if key in self._pending:
            self.entry.async_create_background_task(
                self.hass,
                self.coordinator.async_read_now([key[0]]),
                "ekm relay confirmation",
            )

    @callback
    def _check(self) -> None:
        """On every update: a reading newer than a command showing its state confirms it."""
        readings = self.coordinator.data.readings
        for key, waiting in list(self._pending.items()):
            address, relay = key
            reading = readings.get(address)
            if reading is None or reading.timestamp_ms <= waiting.after_ms:
                continue
            if relay_state(reading, relay) is waiting.on:
                self._cancel(key)
                self.confirmed += 1
                ir.async_delete_issue(
                    self.hass, DOMAIN, unconfirmed_issue_id(self.entry.entry_id, address, relay)
                )
                LOGGER.debug("Relay %s of meter %s confirmed by a reading", relay, address)
                self._notify(key)

    @callback
    def _expire(self, key: RelayKey, _now: datetime) -> None:
        waiting = self._pending.get(key)
        if waiting is None:
            return
        self._cancel(key)
        address, relay = key
        minutes = max(1, round(waiting.timeout_s / 60))
        if 0 < waiting.duration < waiting.timeout_s:
            LOGGER.debug(
                "Relay %s of meter %s: the %s s command ended before a reading showed it",
                relay,
                address,
                waiting.duration,
            )
        else:
            self.unconfirmed += 1
            name = self._name(address)
            state = "on" if waiting.on else "off"
            LOGGER.warning(
                "Relay %s of %s was switched %s through EKM, but no reading confirmed it "
                "within %d minutes; it shows the state the meter reports again. EKM only "
                "promises delivery to the gateway: check that the Push3 is online",
                relay,
                name,
                state,
                minutes,
            )
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                unconfirmed_issue_id(self.entry.entry_id, address, relay),
                is_fixable=False,
                is_persistent=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key="relay_unconfirmed",
                translation_placeholders={
                    "meter": name,
                    "relay": str(relay),
                    "state": state,
                    "minutes": str(minutes),
                },
            )
        self._notify(key)

    def _name(self, address: str) -> str:
        device = dr.async_get(self.hass).async_get_device_by_identifier(
            (DOMAIN, address), self.entry.entry_id
        )
        return (device.name_by_user or device.name or address) if device else address

    @callback
    def _cancel(self, key: RelayKey) -> None:
        waiting = self._pending.pop(key, None)
        for cancel in waiting.timers if waiting else ():
            cancel()

    @callback
    def _cancel_all(self) -> None:
        for key in list(self._pending):
            self._cancel(key)

    def diagnostics(self) -> dict[str, Any]:
        """Pending commands and how many were confirmed or not."""
        return {
            "confirmed": self.confirmed,
            "unconfirmed": self.unconfirmed,
            "pending": {
                f"{address} relay {relay}": {
                    "on": waiting.on,
                    "duration_s": waiting.duration,
                    "sent": waiting.sent.isoformat(),
                    "msg_id": waiting.msg_id,
                }
                for (address, relay), waiting in self._pending.items()
            },
        }


__all__ = [
    "CONFIRM_TIMEOUT",
    "BusRelays",
    "CloudRelays",
    "RelayControl",
    "relay_state",
    "unconfirmed_issue_id",
]
