"""Setup, devices, failures and recovery, against the simulated EKM cloud."""

from __future__ import annotations

from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.ekm.const import DOMAIN
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_GATEWAY_MAC, DEMO_METER, Fleet, SimMeter

DEMO_POWER = "sensor.omnimeter_000000010389_power"
DEMO_IMPORT = "sensor.omnimeter_000000010389_energy_imported"


async def _refresh(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()


async def test_setup_and_unload(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    assert loaded_entry.state is ConfigEntryState.LOADED
    assert hass.states.get(DEMO_POWER) is not None
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get(DEMO_POWER).state == STATE_UNAVAILABLE


async def test_devices_and_gateway_links(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    fleet: Fleet,
    device_registry: dr.DeviceRegistry,
) -> None:
    gateway = device_registry.async_get_device_by_identifier(
        (DOMAIN, DEMO_GATEWAY_MAC), loaded_entry.entry_id
    )
    assert gateway is not None
    assert gateway.name == "Demo Push3"
    assert gateway.model == "Push3 gateway"
    meter = device_registry.async_get_device_by_identifier(
        (DOMAIN, DEMO_METER), loaded_entry.entry_id
    )
    assert meter is not None
    assert meter.via_device_id == gateway.id
    assert meter.model == "Omnimeter Pulse v.4"
    assert meter.serial_number == DEMO_METER
    assert meter.sw_version == fleet.meters[DEMO_METER].firmware
    v3 = device_registry.async_get_device_by_identifier(
        (DOMAIN, "000000010388"), loaded_entry.entry_id
    )
    assert v3 is not None and v3.model == "Omnimeter I v.3"
    loose = device_registry.async_get_device_by_identifier(
        (DOMAIN, "000300000001"), loaded_entry.entry_id
    )
    assert loose is not None and loose.via_device_id is None
    devices = dr.async_entries_for_config_entry(device_registry, loaded_entry.entry_id)
    assert len(devices) == len(fleet.meters) + len(fleet.gateways)


async def test_auth_failure_starts_reauth(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: Fleet
) -> None:
    fleet.revoke(fleet.account_key)
    await _refresh(hass, loaded_entry)
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]


async def test_auth_failure_at_setup(
    hass: HomeAssistant, entry: MockConfigEntry, fleet: Fleet
) -> None:
    fleet.revoke(fleet.account_key)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None


async def test_not_ready_when_cloud_down(
    hass: HomeAssistant, entry: MockConfigEntry, cloud: CloudSimulator
) -> None:
    cloud.faults.error_rates = {503: 1.0}
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


@pytest.mark.parametrize(
    "fault",
    [
        {"error_rates": {500: 1.0}},
        {"error_rates": {502: 1.0}},
        {"malformed": "not_json"},
        {"malformed": "truncated"},
        {"malformed": "wrong_shape"},
    ],
)
async def test_failure_then_recovery(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    cloud: CloudSimulator,
    fault: dict[str, object],
) -> None:
    assert hass.states.get(DEMO_IMPORT).state != STATE_UNAVAILABLE
    for name, value in fault.items():
        setattr(cloud.faults, name, value)
    await _refresh(hass, loaded_entry)
    assert hass.states.get(DEMO_IMPORT).state == STATE_UNAVAILABLE
    assert hass.states.get(DEMO_POWER).state == STATE_UNAVAILABLE
    cloud.faults.reset()
    await _refresh(hass, loaded_entry)
    assert hass.states.get(DEMO_IMPORT).state != STATE_UNAVAILABLE


async def test_rate_limit_defers_next_poll(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    cloud: CloudSimulator,
) -> None:
    cloud.faults.error_rates = {429: 1.0}
    cloud.faults.retry_after = "300"
    coordinator = loaded_entry.runtime_data.coordinator
    await _refresh(hass, loaded_entry)
    assert not coordinator.last_update_success
    assert hass.states.get(DEMO_POWER).state == STATE_UNAVAILABLE
    cloud.faults.reset()
    cloud.requests.clear()
    # The normal 60 s poll is skipped: EKM asked for 300 s.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=240))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert sum(cloud.requests.values()) == 0
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=302))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert sum(cloud.requests.values()) > 0
    assert coordinator.last_update_success
    assert hass.states.get(DEMO_POWER).state != STATE_UNAVAILABLE


async def test_timeout_then_recovery(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, cloud: CloudSimulator
) -> None:
    client = loaded_entry.runtime_data.client
    client._http._timeout = __import__("aiohttp").ClientTimeout(total=0.2)
    cloud.faults.latency_s = 1.0
    await _refresh(hass, loaded_entry)
    assert hass.states.get(DEMO_POWER).state == STATE_UNAVAILABLE
    cloud.faults.reset()
    await _refresh(hass, loaded_entry)
    assert hass.states.get(DEMO_POWER).state != STATE_UNAVAILABLE


async def test_stale_meter_unavailable(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    fleet: Fleet,
    freezer: FrozenDateTimeFactory,
) -> None:
    reporting = "binary_sensor.omnimeter_000000010389_reporting"
    assert hass.states.get(reporting).state == "on"
    fleet.meters[DEMO_METER].responsive = False
    freezer.tick(timedelta(minutes=15))
    await _refresh(hass, loaded_entry)
    assert hass.states.get(DEMO_POWER).state == STATE_UNAVAILABLE
    assert hass.states.get(reporting).state == "off"
    # The other meters keep reporting.
    assert hass.states.get("sensor.omnimeter_000000010388_power").state != STATE_UNAVAILABLE
    fleet.meters[DEMO_METER].responsive = True
    freezer.tick(timedelta(minutes=1))
    await _refresh(hass, loaded_entry)
    assert hass.states.get(DEMO_POWER).state != STATE_UNAVAILABLE
    assert hass.states.get(reporting).state == "on"


async def test_new_and_removed_meters(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    fleet: Fleet,
    freezer: FrozenDateTimeFactory,
    device_registry: dr.DeviceRegistry,
) -> None:
    fleet.add_meter(SimMeter(address="000000077777", protocol="v4", gateway_mac=DEMO_GATEWAY_MAC))
    removed = "000000010388"
    del fleet.meters[removed]
    for gateway in fleet.gateways.values():
        if removed in gateway.meters:
            gateway.meters.remove(removed)
    freezer.tick(timedelta(minutes=31))
    await _refresh(hass, loaded_entry)
    assert (
        device_registry.async_get_device_by_identifier(
            (DOMAIN, "000000077777"), loaded_entry.entry_id
        )
        is not None
    )
    assert hass.states.get("sensor.omnimeter_000000077777_power") is not None
    assert (
        device_registry.async_get_device_by_identifier((DOMAIN, removed), loaded_entry.entry_id)
        is None
    )


async def test_manual_device_removal(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    assert await __import__("homeassistant.setup").setup.async_setup_component(hass, "config", {})
    client = await hass_ws_client(hass)
    meter = device_registry.async_get_device_by_identifier(
        (DOMAIN, DEMO_METER), loaded_entry.entry_id
    )
    assert meter is not None
    await client.send_json_auto_id(
        {
            "type": "config/device_registry/remove_config_entry",
            "config_entry_id": loaded_entry.entry_id,
            "device_id": meter.id,
        }
    )
    response = await client.receive_json()
    assert not response["success"]  # still on the account: it would come back
    orphan = device_registry.async_get_or_create(
        config_entry_id=loaded_entry.entry_id, identifiers={(DOMAIN, "000000099999")}
    )
    await client.send_json_auto_id(
        {
            "type": "config/device_registry/remove_config_entry",
            "config_entry_id": loaded_entry.entry_id,
            "device_id": orphan.id,
        }
    )
    response = await client.receive_json()
    assert response["success"]


async def test_entity_ids_are_stable(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    entity = entity_registry.async_get(DEMO_IMPORT)
    assert entity is not None
    assert entity.unique_id == f"1010_{DEMO_METER}_energy_import"
    assert entity.translation_key == "energy_import"


async def test_account_refresh_failure_keeps_meters(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A failed account re-read keeps the known meters; readings keep flowing."""
    cloud.faults.only_endpoints = ["account", "gateway"]
    cloud.faults.error_rates = {500: 1.0}
    freezer.tick(timedelta(minutes=31))
    await _refresh(hass, loaded_entry)
    assert loaded_entry.runtime_data.coordinator.last_update_success
    assert hass.states.get(DEMO_POWER).state != STATE_UNAVAILABLE
