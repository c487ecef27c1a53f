"""Base entity: one meter's device, available only while its data is fresh."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import EkmCoordinator
from .pyekm import MeterReading


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

    @property
    def reading(self) -> MeterReading | None:
        """The meter's newest reading, None if it has none or it is stale."""
        return self.coordinator.data.reading(self.address)

    @property
    def available(self) -> bool:
        """Available while the last update worked and the meter's data is fresh."""
        return super().available and self.reading is not None
