"""Relay switches of v4/v5 Omnimeters, on an RS-485 bus or behind a Push3 gateway."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EkmConfigEntry
from .coordinator import EkmCoordinator
from .entity import EkmEntity, async_add_meter_entities, is_v4
from .pyekm import MeterReading
from .relays import RelayControl, relay_state

PARALLEL_UPDATES = 1  # one command at a time (a bus, or one gateway's command stream)


@dataclass(frozen=True, kw_only=True)
class EkmRelayDescription(SwitchEntityDescription):
    """A relay (1 or 2) of a meter."""

    relay: int


RELAYS = tuple(
    EkmRelayDescription(
        key=f"relay_{n}",
        translation_key="relay",
        translation_placeholders={"relay": str(n)},
        relay=n,
    )
    for n in (1, 2)
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add relay switches for v4/v5 meters that can be commanded (v3 meters have none).

    On the cloud, a meter can be commanded only through its Push3 gateway.
    """
    coordinator = entry.runtime_data.coordinator
    relays = entry.runtime_data.relays
    if relays is None:  # a meter key cannot command its gateway
        return
    cloud = relays.confirms_later

    def _present(_: EkmRelayDescription, reading: MeterReading) -> bool:
        if not (is_v4(reading) and "State_Out" in reading.values):
            return False
        device = coordinator.data.devices.get(reading.address)
        return not cloud or (device is not None and device.gateway_mac is not None)

    async_add_meter_entities(entry, async_add_entities, RELAYS, _present, EkmRelaySwitch)


class EkmRelaySwitch(EkmEntity, SwitchEntity):
    """On = relay closed. State read back from the meter's ``State_Out``.

    Through the cloud, a switched relay shows the requested state as pending until a
    reading confirms it (``relays.CloudRelays``).
    """

    entity_description: EkmRelayDescription

    def __init__(
        self, coordinator: EkmCoordinator, address: str, description: EkmRelayDescription
    ) -> None:
        super().__init__(coordinator, address, description)
        relays = coordinator.config_entry.runtime_data.relays
        assert relays is not None  # every entry type with relays has a control
        self.relays: RelayControl = relays

    async def async_added_to_hass(self) -> None:
        """Follow pending commands as well as readings."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self.relays.async_subscribe(
                self.address, self.entity_description.relay, self.async_write_ha_state
            )
        )

    @property
    def is_on(self) -> bool | None:
        """Whether the relay is closed (or is being closed, while pending)."""
        pending = self.relays.pending(self.address, self.entity_description.relay)
        if pending is not None:
            return pending
        return relay_state(self.reading, self.entity_description.relay)

    @property
    def extra_state_attributes(self) -> Mapping[str, Any] | None:
        """``pending``: a cloud command is sent but no reading has confirmed it yet."""
        if not self.relays.confirms_later:
            return None
        return {
            "pending": self.relays.pending(self.address, self.entity_description.relay) is not None
        }

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Close the relay (held)."""
        await self.async_set_relay(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Open the relay (held)."""
        await self.async_set_relay(False)

    async def async_handle_set_relay(self, state: str, duration: int = 0) -> None:
        """The ekm.set_relay action: 'on' or 'off', held (0) or for 1-9999 seconds."""
        await self.async_set_relay(state == "on", duration)

    async def async_set_relay(self, closed: bool, duration: int = 0) -> None:
        """Close or open the relay, held (0) or for 1-9999 seconds."""
        self._require_reading()
        await self.relays.async_set(self.address, self.entity_description.relay, closed, duration)
