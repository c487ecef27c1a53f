"""Setup, devices, failures and recovery, against the simulated EKM cloud."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import (
    RELOAD_AFTER_UPDATE_DELAY,
    SOURCE_REAUTH,
    ConfigEntryState,
)
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.ekm.const import (
    CONF_FULL_READ_EVERY,
    CONF_METERS,
    CONF_SCAN_INTERVAL,
    CONF_STALE_THRESHOLD,
    DOMAIN,
)
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_GATEWAY_MAC, DEMO_METER, Fleet, SimMeter
from tests.components.bus_helpers import BUS_V3, BUS_V4, setup_bus_entry, virtual_bus
from tests.components.flows import async_open_options

DEMO_POWER = "sensor.omnimeter_10389_power"
DEMO_IMPORT = "sensor.omnimeter_10389_energy_imported"


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
    reporting = "binary_sensor.omnimeter_10389_reporting"
    assert hass.states.get(reporting).state == "on"
    fleet.meters[DEMO_METER].responsive = False
    freezer.tick(timedelta(minutes=15))
    await _refresh(hass, loaded_entry)
    assert hass.states.get(DEMO_POWER).state == STATE_UNAVAILABLE
    assert hass.states.get(reporting).state == "off"
    # The other meters keep reporting.
    assert hass.states.get("sensor.omnimeter_10388_power").state != STATE_UNAVAILABLE
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
    assert hass.states.get("sensor.omnimeter_77777_power") is not None
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
            "type": "config/device_registry/remove",
            "device_id": meter.id,
        }
    )
    response = await client.receive_json()
    assert not response["success"]  # still on the account: it would come back
    assert response["error"]["message"] == "Failed to remove device entry, rejected by integration"
    orphan = device_registry.async_get_or_create(
        config_entry_id=loaded_entry.entry_id, identifiers={(DOMAIN, "000000099999")}
    )
    await client.send_json_auto_id(
        {
            "type": "config/device_registry/remove",
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


# --- excluding a meter in the options -------------------------------------------------------


async def _choose_meters(
    hass: HomeAssistant, entry: MockConfigEntry, meters: list[str], **form: Any
) -> None:
    """Save the options with only these meters included (the entry reloads)."""
    result = await async_open_options(hass, entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**form, CONF_METERS: meters}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()


async def _reload_after_enabling(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Home Assistant reloads the entry a while after an entity is enabled: let it."""
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=RELOAD_AFTER_UPDATE_DELAY + 1)
    )
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


def _entity_id(hass: HomeAssistant, entry: MockConfigEntry, address: str, key: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{entry.unique_id}_{address}_{key}"
    )
    assert entity_id is not None, key
    return entity_id


async def _exclude_and_include_again(
    hass: HomeAssistant, entry: MockConfigEntry, address: str, others: list[str], **form: Any
) -> None:
    """The owner customises a meter, excludes it, includes it again: all is as it was."""
    devices, entities = dr.async_get(hass), er.async_get(hass)
    device = devices.async_get_device_by_identifier((DOMAIN, address), entry.entry_id)
    assert device is not None
    devices.async_update_device(device.id, name_by_user="Main panel")
    power = _entity_id(hass, entry, address, "power")
    entities.async_update_entity(power, new_entity_id="sensor.main_panel_power", name="Panel")
    power = "sensor.main_panel_power"
    enabled = _entity_id(hass, entry, address, "voltage_line_2")  # disabled by default
    entities.async_update_entity(enabled, disabled_by=None)
    disabled = _entity_id(hass, entry, address, "energy_import")  # enabled by default
    entities.async_update_entity(disabled, disabled_by=er.RegistryEntryDisabler.USER)
    untouched = _entity_id(hass, entry, address, "voltage_line_3")
    await _reload_after_enabling(hass, entry)
    assert hass.states.get(enabled) is not None
    shown = {e: hass.states.get(e).name for e in (power, enabled)}  # type: ignore[union-attr]

    await _choose_meters(hass, entry, others, **form)
    device = devices.async_get(device.id)
    assert device is not None, "an excluded meter keeps its device"
    assert device.disabled_by is dr.DeviceEntryDisabler.INTEGRATION
    assert entities.async_get(power).disabled_by is er.RegistryEntryDisabler.DEVICE  # type: ignore[union-attr]
    assert hass.states.get(power) is None
    assert hass.states.get(enabled) is None

    await _choose_meters(hass, entry, sorted([*others, address]), **form)
    await _reload_after_enabling(hass, entry)  # its entities were enabled again
    device = devices.async_get(device.id)
    assert device is not None
    assert device.disabled_by is None
    assert device.name_by_user == "Main panel"
    panel = entities.async_get(power)
    assert panel is not None and panel.name == "Panel" and panel.disabled_by is None
    assert entities.async_get(enabled).disabled_by is None  # type: ignore[union-attr]
    assert entities.async_get(disabled).disabled_by is er.RegistryEntryDisabler.USER  # type: ignore[union-attr]
    assert entities.async_get(untouched).disabled_by is er.RegistryEntryDisabler.INTEGRATION  # type: ignore[union-attr]
    for entity_id in (power, enabled):
        state = hass.states.get(entity_id)
        assert state is not None and state.state != STATE_UNAVAILABLE, entity_id
    assert {e: hass.states.get(e).name for e in (power, enabled)} == shown  # type: ignore[union-attr]


async def test_excluded_cloud_meter_comes_back_as_it_was(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: Fleet
) -> None:
    others = sorted(a for a in fleet.meters if a != DEMO_METER)
    form = {CONF_SCAN_INTERVAL: 60, CONF_STALE_THRESHOLD: 600, "push": {}}
    await _exclude_and_include_again(hass, loaded_entry, DEMO_METER, others, **form)


async def test_excluded_bus_meter_comes_back_as_it_was(
    hass: HomeAssistant, fleet: Fleet, tmp_path: Path
) -> None:
    form = {CONF_SCAN_INTERVAL: 5, CONF_STALE_THRESHOLD: 60, CONF_FULL_READ_EVERY: 10}
    async with virtual_bus(fleet, tmp_path) as port:
        entry = await setup_bus_entry(hass, port)
        await _exclude_and_include_again(hass, entry, BUS_V4, [BUS_V3], **form)
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_excluded_meter_can_be_deleted_and_gone_meters_are_removed(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    fleet: Fleet,
    freezer: FrozenDateTimeFactory,
    device_registry: dr.DeviceRegistry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """The owner may delete an excluded meter; one that leaves the account is removed."""
    assert await __import__("homeassistant.setup").setup.async_setup_component(hass, "config", {})
    v3, solar = "000000010388", "000000000099"
    form = {CONF_SCAN_INTERVAL: 60, CONF_STALE_THRESHOLD: 600, "push": {}}
    await _choose_meters(hass, loaded_entry, sorted(set(fleet.meters) - {v3, solar}), **form)
    excluded = device_registry.async_get_device_by_identifier((DOMAIN, v3), loaded_entry.entry_id)
    assert excluded is not None and excluded.disabled_by is dr.DeviceEntryDisabler.INTEGRATION
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {
            "type": "config/device_registry/remove",
            "device_id": excluded.id,
        }
    )
    assert (await client.receive_json())["success"]
    assert device_registry.async_get(excluded.id) is None

    # The excluded solar meter leaves the account: its device goes.
    del fleet.meters[solar]
    for gateway in fleet.gateways.values():
        if solar in gateway.meters:
            gateway.meters.remove(solar)
    freezer.tick(timedelta(minutes=31))
    await _refresh(hass, loaded_entry)
    assert (
        device_registry.async_get_device_by_identifier((DOMAIN, solar), loaded_entry.entry_id)
        is None
    )


async def test_devices_are_named_to_tell_apart(
    hass: HomeAssistant, cloud: CloudSimulator, fleet: Fleet, entry: MockConfigEntry
) -> None:
    """EKM's own name where the account has one; else the address without its zeros."""
    cloud.faults.account_extra = {
        "meters": [
            {"address": a, "name": "Water heater"} if a == DEMO_METER else {"address": a}
            for a in sorted(fleet.meters)
        ]
    }
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    registry = dr.async_get(hass)
    names = {
        address: device.name
        for address in fleet.meters
        if (device := registry.async_get_device_by_identifier((DOMAIN, address), entry.entry_id))
    }
    assert names[DEMO_METER] == "Water heater"
    assert names["000000010388"] == "Omnimeter 10388"
    assert names["000300000001"] == "Omnimeter 300000001"
    assert hass.states.get("sensor.water_heater_power") is not None
    # The options' meter list names them too.
    result = await async_open_options(hass, entry.entry_id)
    selector = result["data_schema"].schema["meters"]
    labels = {o["value"]: o["label"] for o in selector.config["options"]}
    assert labels[DEMO_METER] == f"{DEMO_METER} (Water heater)"
    assert labels["000000010388"] == "000000010388"
    hass.config_entries.options.async_abort(result["flow_id"])
