"""Binary sensors: whether each meter is reporting, push streams and gateways are up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from . import EkmConfigEntry
from .const import DOMAIN
from .coordinator import EkmGatewayStatusCoordinator
from .entity import EkmEntity
from .push import EkmPushManager, signal_push_state

PARALLEL_UPDATES = 0

PUSH_CONNECTED = BinarySensorEntityDescription(
    key="push_connected",
    translation_key="push_connected",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)

GATEWAY_ONLINE = BinarySensorEntityDescription(
    key="gateway_online",
    translation_key="gateway_online",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)

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
    last_devices: list[object] = [None]

    @callback
    def _add_new() -> None:
        devices = coordinator.data.devices
        if devices is last_devices[0]:  # the same map between polls: nothing new
            return
        last_devices[0] = devices
        new = [a for a in devices if a not in known]
        known.update(new)
        if new:
            async_add_entities(EkmReportingSensor(coordinator, a, REPORTING) for a in new)

    _add_new()
    entry.async_on_unload(coordinator.async_add_listener(_add_new))
    if (push := entry.runtime_data.push) is not None:
        async_add_entities(EkmPushConnectedSensor(entry, push, mac) for mac in push.gateways)
    if (status := entry.runtime_data.gateway_status) is not None:
        _add_gateway_sensors(entry, status, async_add_entities)


@callback
def _add_gateway_sensors(
    entry: EkmConfigEntry,
    status: EkmGatewayStatusCoordinator,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """A gateway-status sensor per Push3 gateway on the account, as gateways appear."""
    known: set[str] = set()
    gateways = status.cloud

    @callback
    def _add_new() -> None:
        new = [mac for mac in gateways.data.gateways if mac not in known]
        known.update(new)
        if new:
            async_add_entities(EkmGatewayOnlineSensor(status, mac) for mac in new)

    _add_new()
    entry.async_on_unload(gateways.async_add_listener(_add_new))


class EkmGatewayOnlineSensor(CoordinatorEntity[EkmGatewayStatusCoordinator], BinarySensorEntity):
    """On while EKM sees the Push3 gateway online (Summary V2 GStat).

    EKM's GStat answer is passed through as attributes: its schema is inferred.
    """

    _attr_has_entity_name = True
    entity_description = GATEWAY_ONLINE

    def __init__(self, coordinator: EkmGatewayStatusCoordinator, mac: str) -> None:
        super().__init__(coordinator)
        self._mac = mac
        self._attr_unique_id = f"{coordinator.config_entry.unique_id}_{mac}_gateway_online"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, mac)})

    @property
    def available(self) -> bool:
        """Available while GStat answers and says something about this gateway."""
        status = self.coordinator.data.get(self._mac)
        return super().available and status is not None and status.online is not None

    @property
    def is_on(self) -> bool | None:
        """Whether EKM sees the gateway online."""
        status = self.coordinator.data.get(self._mac)
        return status.online if status else None

    @property
    def extra_state_attributes(self) -> Mapping[str, Any]:
        """EKM's own status fields, as it sent them."""
        status = self.coordinator.data.get(self._mac)
        return dict(status.raw) if status else {}


ATTR_LAST_READING = "last_reading"


class EkmReportingSensor(EkmEntity, BinarySensorEntity):
    """On while the meter's newest good read is fresh.

    Stays available when the meter goes quiet (that is what it reports); unavailable
    only when EKM itself cannot be reached. The time of the newest reading is an
    attribute: freshness stays visible while the state, and so the logbook, changes
    only when the meter stops or resumes reporting. It is not recorded (each read would
    store a new set of attributes; the *Last reading* sensor keeps that history).
    """

    _unrecorded_attributes = frozenset({ATTR_LAST_READING})

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

    @property
    def extra_state_attributes(self) -> Mapping[str, Any]:
        """When the newest reading was taken (also once it is stale)."""
        reading = self.coordinator.data.readings.get(self.address)
        return {ATTR_LAST_READING: reading.timestamp if reading else None}


class EkmPushConnectedSensor(BinarySensorEntity):
    """On while the gateway's MQTT push stream is connected."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    entity_description = PUSH_CONNECTED

    def __init__(self, entry: EkmConfigEntry, push: EkmPushManager, mac: str) -> None:
        self._push = push
        self._mac = mac
        self._signal = signal_push_state(entry.entry_id)
        self._attr_unique_id = f"{entry.unique_id}_{mac}_push_connected"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, mac)})

    async def async_added_to_hass(self) -> None:
        """Follow the push manager's connection changes."""
        self.async_on_remove(
            async_dispatcher_connect(self.hass, self._signal, self.async_write_ha_state)
        )

    @property
    def is_on(self) -> bool:
        """Whether the stream is connected."""
        return self._push.gateways[self._mac].connected
