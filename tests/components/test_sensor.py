"""Sensor states for each meter model, as EKM reports them through the cloud."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.config_entries import RELOAD_AFTER_UPDATE_DELAY, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
)

from custom_components.ekm.const import DOMAIN
from custom_components.ekm.pyekm import FIELDS, MeterReading
from custom_components.ekm.pyekm.catalog import display_precision
from custom_components.ekm.sensor import SENSORS
from ekmsim.fleet import DEMO_METER, Fleet
from tests.components.bus_helpers import BUS_V4, setup_bus_entry, virtual_bus


def _state(hass: HomeAssistant, address: str, name: str) -> State:
    state = hass.states.get(f"sensor.omnimeter_{int(address)}_{name}")
    assert state is not None, name
    return state


def _latest(fleet: Fleet, address: str) -> dict[str, object]:
    return dict(fleet.history(address)[-1])


async def test_v4_meter_states(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: Fleet
) -> None:
    read = _latest(fleet, DEMO_METER)
    total, rev = float(read["kWh_Tot"]), float(read["Rev_kWh_Tot"])
    assert float(_state(hass, DEMO_METER, "total_energy").state) == pytest.approx(total)
    assert float(_state(hass, DEMO_METER, "energy_exported").state) == pytest.approx(rev)
    imported = _state(hass, DEMO_METER, "energy_imported")
    assert float(imported.state) == pytest.approx(total - rev)
    assert imported.attributes["state_class"] == "total_increasing"
    assert imported.attributes["device_class"] == "energy"
    assert imported.attributes["unit_of_measurement"] == "kWh"
    net = _state(hass, DEMO_METER, "net_energy")
    assert float(net.state) == pytest.approx(total - 2 * rev)
    assert net.attributes["state_class"] == "total"

    power = _state(hass, DEMO_METER, "power")
    assert power.attributes["unit_of_measurement"] == "W"
    assert power.attributes["state_class"] == "measurement"
    volts = float(_state(hass, DEMO_METER, "voltage_l1").state)
    assert volts == pytest.approx(float(read["RMS_Volts_Ln_1"]))
    assert 100 < volts < 140
    assert float(_state(hass, DEMO_METER, "frequency").state) == pytest.approx(
        float(read["Line_Freq"])
    )
    pf = _state(hass, DEMO_METER, "power_factor_l1")
    assert pf.attributes["unit_of_measurement"] == "%"
    assert 0 <= float(pf.state) <= 100
    reporting = hass.states.get(f"binary_sensor.omnimeter_{int(DEMO_METER)}_reporting")
    assert reporting is not None and reporting.state == "on"
    newest = loaded_entry.runtime_data.coordinator.data.readings[DEMO_METER].timestamp
    assert reporting.attributes["last_reading"] == newest


async def test_disabled_by_default(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    for name in (
        "voltage_l2",
        "energy_tariff_1",
        "energy_l1",
        "power_l1",
        "pulse_count_input_1",
        "ct_ratio",
        "firmware",
        "maximum_demand_period",
        "last_reading",  # a logbook entry per read: the Reporting sensor shows it instead
    ):
        entity = entity_registry.async_get(f"sensor.omnimeter_{int(DEMO_METER)}_{name}")
        assert entity is not None, name
        assert entity.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    for name in ("voltage_l1", "current_l1", "power", "energy_imported", "reactive_energy"):
        entity = entity_registry.async_get(f"sensor.omnimeter_{int(DEMO_METER)}_{name}")
        assert entity is not None and entity.disabled_by is None, name


async def test_v3_meter_has_only_v3_sensors(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    v3 = "000000010388"
    assert float(_state(hass, v3, "total_energy").state) > 0
    for missing in ("frequency", "reactive_power", "reactive_energy", "energy_l1"):
        assert entity_registry.async_get(f"sensor.omnimeter_{int(v3)}_{missing}") is None


async def test_solar_meter_exports(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: Fleet
) -> None:
    solar = "000000000099"
    read = _latest(fleet, solar)
    assert float(_state(hass, solar, "energy_exported").state) == pytest.approx(
        float(read["Rev_kWh_Tot"])
    )
    assert float(read["Rev_kWh_Tot"]) > 0


async def test_total_never_goes_backwards(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    coordinator = loaded_entry.runtime_data.coordinator
    current = coordinator.data.readings[DEMO_METER]
    total = current.values["kWh_Tot"]
    assert isinstance(total, float)

    def push(offset_ms: int, **values: object) -> None:
        reading = replace(
            current,
            timestamp_ms=current.timestamp_ms + offset_ms,
            values={**current.values, **values},
        )
        coordinator.async_push_readings([reading])

    push(1000, kWh_Tot=total - 5)
    await hass.async_block_till_done()
    assert _state(hass, DEMO_METER, "total_energy").state == STATE_UNAVAILABLE
    push(2000, kWh_Tot=0.0)
    await hass.async_block_till_done()
    assert _state(hass, DEMO_METER, "total_energy").state == STATE_UNAVAILABLE
    push(3000, kWh_Tot=total + 1)
    await hass.async_block_till_done()
    assert float(_state(hass, DEMO_METER, "total_energy").state) == pytest.approx(total + 1)
    # An older reading arriving late never replaces a newer one.
    push(-60_000, kWh_Tot=total + 0.5)
    await hass.async_block_till_done()
    assert float(_state(hass, DEMO_METER, "total_energy").state) == pytest.approx(total + 1)


async def test_restored_total_guards_restart(
    hass: HomeAssistant, entry: MockConfigEntry, fleet: Fleet
) -> None:
    """A total lower than the one shown before a restart stays unavailable."""
    entity_id = f"sensor.omnimeter_{int(DEMO_METER)}_total_energy"
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(entity_id, "999999.0"),
                {"native_value": 999999.0, "native_unit_of_measurement": "kWh"},
            )
        ],
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).state == STATE_UNAVAILABLE
    assert hass.states.get(f"sensor.omnimeter_{int(DEMO_METER)}_power").state != STATE_UNAVAILABLE


def test_reading_helpers() -> None:
    reading = MeterReading.from_raw("10389", {"kWh_Tot": "1.5", "Model": "1024"}, "cloud")  # type: ignore[arg-type]
    assert reading.number("kWh_Tot") == 1.5
    assert reading.number("Model") is None
    assert reading.text("Model") == "1024"


async def test_diagnostic_settings_when_enabled(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    fleet: Fleet,
    entity_registry: er.EntityRegistry,
) -> None:
    """Settings shown once an owner enables them."""
    names = ("ct_ratio", "maximum_demand_period", "firmware")
    for name in names:
        entity_registry.async_update_entity(
            f"sensor.omnimeter_{int(DEMO_METER)}_{name}", disabled_by=None
        )
    # Home Assistant reloads the entry a while after the last entity is enabled.
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=RELOAD_AFTER_UPDATE_DELAY + 1)
    )
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.LOADED
    read = _latest(fleet, DEMO_METER)
    assert _state(hass, DEMO_METER, "ct_ratio").state == str(read["CT_Ratio"])
    assert _state(hass, DEMO_METER, "maximum_demand_period").state == "15_minutes"
    assert _state(hass, DEMO_METER, "firmware").state == str(read["Firmware"])


def test_every_numeric_sensor_has_a_display_precision() -> None:
    """Each numeric sensor shows the decimals the catalog gives its field."""
    not_numeric = {SensorDeviceClass.ENUM, SensorDeviceClass.TIMESTAMP}
    for description in SENSORS:
        numeric = description.device_class not in not_numeric and all(
            FIELDS[name].value_type is not str for name in description.fields
        )
        if not numeric:
            assert description.suggested_display_precision is None, description.key
            continue
        assert description.suggested_display_precision is not None, description.key
        for name in description.fields:
            assert display_precision(name) == description.suggested_display_precision, name
    by_key = {d.key: d.suggested_display_precision for d in SENSORS}
    assert by_key["reactive_energy"] == by_key["energy_total"] == 2
    assert by_key["voltage_line_1"] == by_key["current_line_1"] == 1
    assert by_key["power"] == by_key["reactive_power"] == by_key["power_factor_line_1"] == 0


def _precision(entity: er.RegistryEntry) -> int | None:
    precision = entity.options.get("sensor", {}).get("suggested_display_precision")
    assert precision is None or isinstance(precision, int)
    return precision


async def test_same_precision_from_cloud_and_rs485(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    fleet: Fleet,
    tmp_path: Path,
    entity_registry: er.EntityRegistry,
) -> None:
    """The same meter through the cloud and on a bus: every field shows alike."""
    async with virtual_bus(fleet, tmp_path) as port:
        bus = await setup_bus_entry(hass, port)
        prefix = f"{bus.unique_id}_{BUS_V4}_"
        compared: dict[str, int | None] = {}
        for on_bus in er.async_entries_for_config_entry(entity_registry, bus.entry_id):
            if on_bus.domain != "sensor" or not on_bus.unique_id.startswith(prefix):
                continue
            key = on_bus.unique_id.removeprefix(prefix)
            cloud_id = entity_registry.async_get_entity_id(
                "sensor", DOMAIN, f"{loaded_entry.unique_id}_{BUS_V4}_{key}"
            )
            if cloud_id is None or on_bus.disabled:
                continue
            from_cloud = entity_registry.async_get(cloud_id)
            assert from_cloud is not None
            assert _precision(from_cloud) == _precision(on_bus), key
            compared[key] = _precision(on_bus)
        assert await hass.config_entries.async_unload(bus.entry_id)
    assert compared["reactive_energy"] == compared["energy_import"] == 2
    assert compared["voltage_line_1"] == 1
    assert compared["frequency"] == 2
    assert compared["power"] == 0
