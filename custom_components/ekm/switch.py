"""Relay switches of v4/v5 Omnimeters on an RS-485 bus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EkmConfigEntry
from .entity import EkmCommandEntity, async_add_meter_entities, is_v4
from .pyekm.catalog import relay_states

PARALLEL_UPDATES = 1  # one command at a time on a bus


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
    """Add relay switches for v4/v5 meters (v3 meters have no relays)."""
    async_add_meter_entities(
        entry,
        async_add_entities,
        RELAYS,
        lambda _, reading: is_v4(reading) and "State_Out" in reading.values,
        EkmRelaySwitch,
    )


class EkmRelaySwitch(EkmCommandEntity, SwitchEntity):
    """On = relay closed. State read back from the meter's State_Out."""

    entity_description: EkmRelayDescription

    @property
    def is_on(self) -> bool | None:
        """Whether the relay is closed."""
        reading = self.reading
        state_out = reading.number("State_Out") if reading else None
        states = relay_states(int(state_out)) if state_out is not None else None
        return None if states is None else states[self.entity_description.relay - 1]

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
        relay = self.entity_description.relay
        await self.coordinator.async_command(
            self.address,
            lambda address, password: self.bus.set_relay(
                address, relay, closed, duration, password=password
            ),
        )
