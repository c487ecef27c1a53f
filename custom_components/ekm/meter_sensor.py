"""The meter sensor: one catalog value of one meter, a total that never goes backwards.

Shared by the catalog's sensors (``sensor.py``) and the pulse-input totals (``pulse.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import RestoreSensor, SensorEntity, SensorEntityDescription
from homeassistant.core import callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.typing import StateType

from .coordinator import EkmCoordinator
from .entity import EkmEntity
from .pyekm import MeterReading
from .repairs import (
    RESET_CONFIRM_READS,
    async_clear_register_reset,
    async_raise_register_reset,
    signal_accept_reset,
)

type ValueFn = Callable[[MeterReading], StateType | datetime]


@dataclass(frozen=True, kw_only=True)
class EkmSensorEntityDescription(SensorEntityDescription):
    """How one sensor reads its value from a reading."""

    fields: tuple[str, ...]  # the first present field is used (others are fallbacks)
    value_fn: ValueFn | None = None  # default: the first present field's value
    # Lifetime registers: a decrease (to 0 or otherwise) is bad data: unavailable.
    monotonic: bool = False
    attrs_fn: Callable[[MeterReading], Mapping[str, Any] | None] | None = None

    def present(self, reading: MeterReading) -> bool:
        """Whether the meter reports what this sensor shows."""
        return any(name in reading.values for name in self.fields)

    def value(self, reading: MeterReading) -> StateType | datetime:
        """Return the value from a reading (None when the field is missing)."""
        if self.value_fn is not None:
            return self.value_fn(reading)
        for name in self.fields:
            if name in reading.values:
                return reading.values[name]
        return None


class EkmSensor(EkmEntity, RestoreSensor, SensorEntity):
    """One value of one meter."""

    entity_description: EkmSensorEntityDescription

    def __init__(
        self,
        coordinator: EkmCoordinator,
        address: str,
        description: EkmSensorEntityDescription,
    ) -> None:
        super().__init__(coordinator, address, description)
        self._highest: float | None = None  # for monotonic registers
        self._valid = False
        self._lower_reads: set[int] = set()  # readings (ms) below the highest value
        self._update_from_reading()

    async def async_added_to_hass(self) -> None:
        """Remember the last total across restarts so it can never go backwards."""
        await super().async_added_to_hass()
        if not self.entity_description.monotonic:
            return
        entry_id = self.coordinator.config_entry.entry_id
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass, signal_accept_reset(entry_id, self.address), self._accept_reset
            )
        )
        last = await self.async_get_last_sensor_data()
        if last is not None and isinstance(last.native_value, int | float):
            self._highest = max(self._highest or 0, float(last.native_value))
            self._update_from_reading()

    @callback
    def _accept_reset(self) -> None:
        """The owner confirmed the meter was replaced or reset: continue from its value."""
        self._highest = None
        self._lower_reads.clear()
        self._update_from_reading()
        self.async_write_ha_state()

    def _update_from_reading(self) -> None:
        reading = self.reading
        value = self.entity_description.value(reading) if reading else None
        self._valid = value is not None
        if self.entity_description.monotonic and isinstance(value, int | float):
            if self._highest is not None and value < self._highest:
                self._valid = False  # bad data (a glitch to 0, say): never go backwards
                self._count_lower(reading, value)
            else:
                self._highest = float(value)
                if self._lower_reads:
                    self._lower_reads.clear()
                    if self.hass is not None:
                        entry_id = self.coordinator.config_entry.entry_id
                        async_clear_register_reset(self.hass, entry_id, self.address)
        self._attr_native_value = value if self._valid else None
        attrs_fn = self.entity_description.attrs_fn
        attrs = attrs_fn(reading) if attrs_fn and reading and self._valid else None
        self._attr_extra_state_attributes = dict(attrs) if attrs else {}

    def _count_lower(self, reading: MeterReading | None, value: float) -> None:
        """A lower register that persists is a replaced or reset meter: ask the owner."""
        if reading is None or self.hass is None:
            return
        self._lower_reads.add(reading.timestamp_ms)
        if len(self._lower_reads) == RESET_CONFIRM_READS:
            assert self._highest is not None
            async_raise_register_reset(
                self.hass,
                self.coordinator.config_entry.entry_id,
                self.address,
                meter=self.device_entry.name_by_user or self.device_entry.name or self.address
                if self.device_entry
                else self.address,
                register=self.entity_description.fields[0],
                old=self._highest,
                new=value,
            )

    @property
    def available(self) -> bool:
        """Unavailable, not 0 or a smaller total, when the value cannot be trusted."""
        return super().available and self._valid
