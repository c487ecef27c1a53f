"""Pulse input ratios of v4/v5 Omnimeters, over RS-485."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.components.number import (
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EkmConfigEntry
from .entity import EkmCommandEntity, async_add_meter_entities, is_v4

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class EkmPulseRatioDescription(NumberEntityDescription):
    """The ratio of one pulse input."""

    pulse_input: int


NUMBERS = tuple(
    EkmPulseRatioDescription(
        key=f"pulse_input_ratio_{n}",
        translation_key="pulse_input_ratio",
        translation_placeholders={"input": str(n)},
        entity_category=EntityCategory.CONFIG,
        native_min_value=1,
        native_max_value=9999,
        native_step=1,
        mode=NumberMode.BOX,
        pulse_input=n,
    )
    for n in (1, 2, 3)
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add pulse input ratios for v4/v5 meters."""
    async_add_meter_entities(
        entry,
        async_add_entities,
        NUMBERS,
        lambda d, reading: is_v4(reading) and f"Pulse_Ratio_{d.pulse_input}" in reading.values,
        EkmPulseRatio,
    )


class EkmPulseRatio(EkmCommandEntity, NumberEntity):
    """Pulse input ratio (pulses per unit the meter counts)."""

    entity_description: EkmPulseRatioDescription

    @property
    def native_value(self) -> float | None:
        """The meter's current ratio."""
        reading = self.reading
        return (
            reading.number(f"Pulse_Ratio_{self.entity_description.pulse_input}")
            if reading
            else None
        )

    async def async_set_native_value(self, value: float) -> None:
        """Write the ratio to the meter."""
        self._require_reading()
        n = self.entity_description.pulse_input
        bus = self.bus
        await self.coordinator.async_command(
            self.address,
            lambda a, pw: bus.set_pulse_input_ratio(a, n, int(value), password=pw),
        )
