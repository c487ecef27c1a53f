"""Base entity: one meter's device, available only while its data is fresh."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from homeassistant.core import callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import EkmCoordinator, EkmRs485Coordinator
from .pyekm import MeterReading
from .pyekm.rs485.client import EkmBus

if TYPE_CHECKING:
    from . import EkmConfigEntry


class EkmEntity(CoordinatorEntity[EkmCoordinator]):
    """An entity of one EKM meter (or ioStack)."""

    _attr_has_entity_name = True

    def __init__(
        self, coordinator: EkmCoordinator, address: str, description: EntityDescription
    ) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        self.address = address
        entry = coordinator.config_entry
        self._attr_unique_id = f"{entry.unique_id}_{address}_{description.key}"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, address)})
        self._seen: tuple[MeterReading | None, bool] | None = None

    @callback
    def _handle_coordinator_update(self) -> None:
        """Write the state only when this meter's reading or availability changed.

        Updates come for every meter (a pushed message is one update); an entity of a
        meter that did not change has nothing new to write.
        """
        seen = (self.reading, self.coordinator.last_update_success)
        if self._seen is not None and seen[0] is self._seen[0] and seen[1] == self._seen[1]:
            return
        self._seen = seen
        self._update_from_reading()
        self.async_write_ha_state()

    def _update_from_reading(self) -> None:
        """Recompute cached values from the (new) reading; entities override this."""

    @property
    def reading(self) -> MeterReading | None:
        """The meter's newest reading, None if it has none or it is stale."""
        return self.coordinator.data.reading(self.address)

    @property
    def available(self) -> bool:
        """Available while the last update worked and the meter's data is fresh."""
        return super().available and self.reading is not None

    def _require_reading(self) -> MeterReading:
        """The reading, or a translated error for a command to a meter without fresh data."""
        reading = self.reading
        if reading is None:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="meter_unavailable",
                translation_placeholders={"meter": self.address},
            )
        return reading


@callback
def async_add_meter_entities[D: EntityDescription](
    entry: EkmConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    descriptions: Sequence[D],
    present: Callable[[D, MeterReading], bool],
    factory: Callable[[EkmCoordinator, str, D], Entity],
) -> None:
    """Add an entity per meter and description the meter supports, now and later.

    Re-checked whenever a meter's set of reported fields changes, so new meters and
    fields that appear later get their entities without a reload.
    """
    coordinator = entry.runtime_data.coordinator
    known: set[tuple[str, str]] = set()
    seen_fields: dict[str, frozenset[str]] = {}

    seen_readings: dict[str, MeterReading] = {}

    @callback
    def _add_new() -> None:
        new: list[Entity] = []
        for address, reading in coordinator.data.readings.items():
            if seen_readings.get(address) is reading:
                continue
            seen_readings[address] = reading
            fields = frozenset(reading.values)
            if seen_fields.get(address) == fields:
                continue
            seen_fields[address] = fields
            for description in descriptions:
                if (address, description.key) not in known and present(description, reading):
                    known.add((address, description.key))
                    new.append(factory(coordinator, address, description))
        if new:
            async_add_entities(new)

    _add_new()
    entry.async_on_unload(coordinator.async_add_listener(_add_new))


class EkmCommandEntity(EkmEntity):
    """An entity that writes to a meter over RS-485."""

    coordinator: EkmRs485Coordinator

    @property
    def bus(self) -> EkmBus:
        """The meter's bus."""
        return self.coordinator.bus


def is_v4(reading: MeterReading) -> bool:
    """Whether the meter speaks the v4/v5 protocol (relays, settings)."""
    return reading.protocol in ("v4", "v5") or "State_Out" in reading.values
