"""scripts/dev/bootstrap_ha.py: the Energy dashboard it saves for the simulator's demo home."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from homeassistant.components.energy.data import (
    DEVICE_CONSUMPTION_SCHEMA,
    ENERGY_SOURCE_SCHEMA,
)
import pytest

from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_API_TOKEN,
    DEMO_GATEWAY_MAC,
    DEMO_GRID_METER,
    DEMO_LAN_KEY,
    DEMO_SOLAR_METER,
    DEMO_SUBPANEL_METER,
    DEMO_WATER_GAL_PER_PULSE,
    DEMO_WATER_HEATER_METER,
    Fleet,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dev" / "bootstrap_ha.py"
POWER = {
    address: f"sensor.omnimeter_{int(address)}_power"
    for address in (
        DEMO_GRID_METER, DEMO_SOLAR_METER, DEMO_SUBPANEL_METER, DEMO_WATER_HEATER_METER
    )
}  # fmt: skip
FLOW = f"sensor.omnimeter_{int(DEMO_GRID_METER)}_water_flow_input_1"


@pytest.fixture(scope="module")
def bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bootstrap_ha", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constants_match_the_simulator(bootstrap: ModuleType) -> None:
    fleet = Fleet.demo()
    assert bootstrap.DEMO_ACCOUNT_KEY == DEMO_ACCOUNT_KEY
    assert bootstrap.DEMO_API_TOKEN == DEMO_API_TOKEN
    assert bootstrap.DEMO_LAN_KEY == DEMO_LAN_KEY == fleet.gateways[DEMO_GATEWAY_MAC].lan_key
    # scripts/develop serves the Demo Push3's LAN API on the second port (sorted by MAC).
    assert sorted(fleet.gateways).index(DEMO_GATEWAY_MAC) == 1
    assert [gw.key for gw in fleet.gateways.values()] == bootstrap.GATEWAY_KEYS
    grid, solar = fleet.meters[bootstrap.GRID_METER], fleet.meters[bootstrap.SOLAR_METER]
    assert grid.solar and not grid.production  # import and return to grid
    assert solar.production  # forward energy = the PV production
    # Devices are sub-meters of the house, each inside the one it names.
    loads = {
        address: fleet.meters[address].base_load_w for address, _, _ in bootstrap.DEVICE_METERS
    }
    for address, _, parent in bootstrap.DEVICE_METERS:
        assert fleet.meters[address].gateway_mac is not None
        assert loads[address] < (grid.base_load_w if parent is None else loads[parent])


def test_prefs_follow_home_assistants_schema(bootstrap: ModuleType) -> None:
    prefs = bootstrap.energy_prefs(POWER)
    sources = ENERGY_SOURCE_SCHEMA(prefs["energy_sources"])
    devices = [DEVICE_CONSUMPTION_SCHEMA(d) for d in prefs["device_consumption"]]
    grid, solar, water = sources
    assert grid["type"] == "grid"
    assert grid["stat_energy_from"] == "ekm:000000000099_energy_import"
    assert grid["stat_energy_to"] == "ekm:000000000099_energy_export"
    assert grid["power_config"] == {"stat_rate": POWER[DEMO_GRID_METER]}  # signed, + = import
    assert solar == {
        "type": "solar",
        "name": "Rooftop PV",
        "stat_energy_from": "ekm:000000015635_energy_import",
        "stat_rate": POWER[DEMO_SOLAR_METER],
    }
    # The house's water meter on the grid meter's pulse input 1, with its flow rate.
    assert water == {"type": "water", "stat_energy_from": "ekm:000000000099_pulse_1"}
    flowing = bootstrap.energy_prefs(POWER, FLOW)["energy_sources"][2]
    assert ENERGY_SOURCE_SCHEMA([flowing])[0]["stat_rate"] == FLOW
    assert devices == [
        {
            "stat_consumption": "ekm:000000010388_energy_import",
            "name": "Sub-panel",
            "stat_rate": POWER[DEMO_SUBPANEL_METER],
        },
        {
            "stat_consumption": "ekm:000000010389_energy_import",
            "name": "Water heater",
            "stat_rate": POWER[DEMO_WATER_HEATER_METER],
            "included_in_stat": "ekm:000000010388_energy_import",
        },
    ]
    # Without power sensors (not there yet): energy only, still valid.
    bare = bootstrap.energy_prefs({})
    ENERGY_SOURCE_SCHEMA(bare["energy_sources"])
    assert not any("stat_rate" in d for d in bare["device_consumption"])
    assert "power_config" not in bare["energy_sources"][0]


def test_pulse_input_matches_the_simulator(bootstrap: ModuleType) -> None:
    grid = Fleet.demo().meters[DEMO_GRID_METER]
    assert grid.water_pulses_per_day > 0
    assert bootstrap.WATER_INPUT == {
        "kind": "water",
        "per_pulse": DEMO_WATER_GAL_PER_PULSE,
        "unit": "gal",
    }
    # What the pulse_meter form shows for each input, kept when the script submits it.
    schema = [
        {
            "name": "input_1",
            "type": "expandable",
            "schema": [
                {"name": "kind", "default": "nothing"},
                {"name": "per_pulse", "description": None},
                {"name": "unit"},
            ],
        },
        {
            "name": "input_2",
            "type": "expandable",
            "schema": [
                {"name": "kind", "default": "electricity"},
                {"name": "per_pulse", "description": {"suggested_value": 1.0}},
                {"name": "unit", "description": {"suggested_value": "Wh"}},
            ],
        },
    ]
    assert bootstrap.pulse_inputs_shown(schema) == {
        "input_1": {"kind": "nothing"},
        "input_2": {"kind": "electricity", "per_pulse": 1.0, "unit": "Wh"},
    }


def _stored(prefs: dict[str, Any]) -> dict[str, Any]:
    """What Home Assistant hands back: defaults filled in, stat_rate from power_config."""
    sources = [
        source
        | ({"stat_rate": source["power_config"]["stat_rate"]} if "power_config" in source else {})
        for source in ENERGY_SOURCE_SCHEMA(prefs["energy_sources"])
    ]
    return {
        "energy_sources": sources,
        "device_consumption": [DEVICE_CONSUMPTION_SCHEMA(d) for d in prefs["device_consumption"]],
        "device_consumption_water": [],
    }


def test_what_is_saved_and_what_is_left_alone(bootstrap: ModuleType) -> None:
    wanted = bootstrap.energy_prefs(POWER)
    action = bootstrap.energy_action
    assert action({"energy_sources": [], "device_consumption": []}, wanted) == "save"
    assert action({}, wanted) == "save"
    assert action(_stored(wanted), wanted) == "keep"
    # Saved before the power sensors existed: completed now.
    assert action(_stored(bootstrap.energy_prefs({})), wanted) == "save"
    # Saved before the water meter: it is added.
    before_water = bootstrap.energy_prefs(POWER)
    before_water["energy_sources"] = before_water["energy_sources"][:2]
    assert action(_stored(before_water), wanted) == "save"
    # The layouts older versions of the script saved: the grid meter, the rest as devices.
    grid = {"type": "grid", "cost_adjustment_day": 0}
    for stat in ("ekm:{}_energy_import", "sensor.omnimeter_{}_energy_imported"):
        older = {
            "energy_sources": [grid | {"stat_energy_from": stat.format(DEMO_GRID_METER)}],
            "device_consumption": [
                {"stat_consumption": stat.format(a)} for a in bootstrap.OLD_DEVICE_METERS
            ],
        }
        assert action(older, wanted) == "save"
    # Anything else is somebody's own set-up.
    own = {
        "energy_sources": [grid | {"stat_energy_from": "sensor.utility_meter"}],
        "device_consumption": [],
    }
    assert action(own, wanted) == "leave"
    edited = _stored(wanted)
    edited["device_consumption"].append({"stat_consumption": "sensor.dryer_energy"})
    assert action(edited, wanted) == "leave"
