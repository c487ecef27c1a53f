"""One-shot meter actions on an RS-485 bus: sync the clock, zero registers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from . import EkmConfigEntry
from .entity import EkmCommandEntity, async_add_meter_entities, is_v4
from .pyekm import MeterReading
from .pyekm.rs485.client import EkmBus

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class EkmButtonDescription(ButtonEntityDescription):
    """A meter command without a value."""

    press_fn: Callable[[EkmBus, str, str | None], Awaitable[None]]
    supported_fn: Callable[[MeterReading], bool] = lambda _: True


BUTTONS = (
    EkmButtonDescription(
        key="sync_clock",
        translation_key="sync_clock",
        entity_category=EntityCategory.CONFIG,
        # The meter keeps local time: Home Assistant's time zone.
        press_fn=lambda bus, a, pw: bus.set_time(
            a, dt_util.now().replace(tzinfo=None), password=pw
        ),
    ),
    EkmButtonDescription(
        key="reset_max_demand",
        translation_key="reset_max_demand",
        entity_category=EntityCategory.CONFIG,
        press_fn=lambda bus, a, pw: bus.reset_max_demand(a, password=pw),
    ),
    EkmButtonDescription(
        key="zero_resettable_energy",
        translation_key="zero_resettable_energy",
        entity_category=EntityCategory.CONFIG,
        press_fn=lambda bus, a, pw: bus.zero_resettable_kwh(a, password=pw),
        supported_fn=is_v4,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the actions each meter supports."""
    async_add_meter_entities(
        entry,
        async_add_entities,
        BUTTONS,
        lambda description, reading: description.supported_fn(reading),
        EkmButton,
    )


class EkmButton(EkmCommandEntity, ButtonEntity):
    """Press to run the command on the meter."""

    entity_description: EkmButtonDescription

    async def async_press(self) -> None:
        """Run the command."""
        self._require_reading()
        bus = self.bus
        await self.coordinator.async_command(
            self.address, lambda a, pw: self.entity_description.press_fn(bus, a, pw)
        )
