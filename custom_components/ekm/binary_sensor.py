"""Binary sensors: whether each meter is reporting."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EkmConfigEntry
from .entity import EkmEntity

PARALLEL_UPDATES = 0

REPORTING = BinarySensorEntityDescription(
    key="reporting",
    translation_key="reporting",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a 'reporting' sensor per meter, now and as meters appear."""
    coordinator = entry.runtime_data.coordinator
    known: set[str] = set()

    @callback
    def _add_new() -> None:
        new = [a for a in coordinator.data.devices if a not in known]
        known.update(new)
        if new:
            async_add_entities(EkmReportingSensor(coordinator, a, REPORTING) for a in new)

    _add_new()
    entry.async_on_unload(coordinator.async_add_listener(_add_new))


class EkmReportingSensor(EkmEntity, BinarySensorEntity):
    """On while the meter's newest good read is fresh.

    Stays available when the meter goes quiet (that is what it reports); unavailable
    only when EKM itself cannot be reached.
    """

    @property
    def available(self) -> bool:
        """Available while the integration reaches EKM and knows the meter."""
        return (
            self.coordinator.last_update_success and self.address in self.coordinator.data.devices
        )

    @property
    def is_on(self) -> bool:
        """Whether the meter reported within the stale threshold."""
        return self.reading is not None
