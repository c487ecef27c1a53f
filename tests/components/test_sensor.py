"""Sensor states for each meter model, as EKM reports them through the cloud."""

from __future__ import annotations

from dataclasses import replace

from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache_with_extra_data,
)

from custom_components.ekm.pyekm import MeterReading
from ekmsim.fleet import DEMO_METER, Fleet


def _state(hass: HomeAssistant, address: str, name: str) -> State:
    state = hass.states.get(f"sensor.omnimeter_{address}_{name}")
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
    assert _state(hass, DEMO_METER, "last_reading").state != "unavailable"


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
    ):
        entity = entity_registry.async_get(f"sensor.omnimeter_{DEMO_METER}_{name}")
        assert entity is not None, name
        assert entity.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    for name in ("voltage_l1", "current_l1", "power", "energy_imported", "reactive_energy"):
        entity = entity_registry.async_get(f"sensor.omnimeter_{DEMO_METER}_{name}")
        assert entity is not None and entity.disabled_by is None, name


async def test_v3_meter_has_only_v3_sensors(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    v3 = "000000010388"
    assert float(_state(hass, v3, "total_energy").state) > 0
    for missing in ("frequency", "reactive_power", "reactive_energy", "energy_l1"):
        assert entity_registry.async_get(f"sensor.omnimeter_{v3}_{missing}") is None


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
    entity_id = f"sensor.omnimeter_{DEMO_METER}_total_energy"
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
    assert hass.states.get(f"sensor.omnimeter_{DEMO_METER}_power").state != STATE_UNAVAILABLE


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
            f"sensor.omnimeter_{DEMO_METER}_{name}", disabled_by=None
        )
    await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    read = _latest(fleet, DEMO_METER)
    assert _state(hass, DEMO_METER, "ct_ratio").state == str(read["CT_Ratio"])
    assert _state(hass, DEMO_METER, "maximum_demand_period").state == "15_minutes"
    assert _state(hass, DEMO_METER, "firmware").state == str(read["Firmware"])
