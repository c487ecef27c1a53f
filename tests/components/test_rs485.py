"""Local RS-485: config flow, entities and commands against virtual meters on a real pty."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import json
from pathlib import Path
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_PORT, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ekm.const import (
    CONF_ADDRESSES,
    CONF_ENTRY_TYPE,
    CONF_FULL_READ_EVERY,
    CONF_METERS,
    CONF_PASSWORDS,
    CONF_SCAN_INTERVAL,
    CONF_SINGLE_METER,
    CONF_STALE_THRESHOLD,
    DOMAIN,
    ENTRY_RS485,
    WILDCARD_ADDRESS,
)
from ekmsim.fleet import DEMO_METER, Fleet, SimClock, SimMeter
from ekmsim.rs485 import VirtualBus
from tests.components.flows import async_open_options

V4 = DEMO_METER  # 000000010389, v4
V3 = "000000010388"
V5 = "000000015635"
PASSWORD = "24681357"
STRINGS_ABORT = json.loads(
    (Path(__file__).parents[2] / "custom_components/ekm/strings.json").read_text()
)["config"]["abort"]


@pytest.fixture
def fleet() -> Fleet:
    """The demo meters on a manual clock."""
    world = Fleet.demo(clock=SimClock(manual=True))
    world.meters[V4].password = PASSWORD
    return world


@pytest.fixture
async def bus(fleet: Fleet, tmp_path: Path) -> AsyncIterator[VirtualBus]:
    """A v4 and a v3 meter on one virtual bus, on a pty (paced fast for the tests)."""
    virtual = VirtualBus([fleet.meters[V4], fleet.meters[V3]], baud=115200, turnaround=0.005)
    await virtual.open_pty(tmp_path / "ttyEKM")
    try:
        yield virtual
    finally:
        await virtual.close()


@pytest.fixture
def port(tmp_path: Path, bus: VirtualBus) -> str:
    """The pty path Home Assistant opens."""
    return str(tmp_path / "ttyEKM")


def bus_entry(port: str, **passwords: str) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"RS-485 {port}",
        unique_id=port,
        data={
            CONF_ENTRY_TYPE: ENTRY_RS485,
            CONF_PORT: port,
            CONF_METERS: {V4: {"protocol": "v4"}, V3: {"protocol": "v3"}},
            CONF_PASSWORDS: passwords,
        },
        options={CONF_SCAN_INTERVAL: 5},
    )


@pytest.fixture
async def loaded_bus(hass: HomeAssistant, port: str) -> MockConfigEntry:
    entry = bus_entry(port, **{V4: PASSWORD})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def _state(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


async def _refresh(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()


# --- config flow --------------------------------------------------------------------------


async def _bus_form(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "rs485"}
    )
    assert result["step_id"] == "rs485"
    return result["flow_id"]


async def test_flow_two_meters(hass: HomeAssistant, port: str) -> None:
    flow_id = await _bus_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_PORT: port, CONF_ADDRESSES: "10389, 000000010388", CONF_SINGLE_METER: False}
    )
    assert result["step_id"] == "rs485_passwords"
    result = await hass.config_entries.flow.async_configure(flow_id, {V4: "1234"})
    assert result["errors"] == {"base": "invalid_password"}
    result = await hass.config_entries.flow.async_configure(flow_id, {V4: PASSWORD})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        CONF_ENTRY_TYPE: ENTRY_RS485,
        CONF_PORT: port,
        CONF_METERS: {V4: {"protocol": "v4"}, V3: {"protocol": "v3"}},
        CONF_PASSWORDS: {V4: PASSWORD},
    }
    assert result["options"] == {CONF_SCAN_INTERVAL: 5}
    await hass.async_block_till_done()
    assert result["result"].state is ConfigEntryState.LOADED


async def test_flow_single_meter_wildcard(
    hass: HomeAssistant, fleet: Fleet, tmp_path: Path
) -> None:
    async with VirtualBus([fleet.meters[V5]], baud=115200, turnaround=0.005) as single:
        path = await single.open_pty(tmp_path / "ttySingle")
        flow_id = await _bus_form(hass)
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_PORT: path, CONF_ADDRESSES: "", CONF_SINGLE_METER: True}
        )
        result = await hass.config_entries.flow.async_configure(flow_id, {})
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"][CONF_METERS] == {V5: {"protocol": "v4", "poll": WILDCARD_ADDRESS}}
        await hass.async_block_till_done()
        assert _state(hass, f"sensor.omnimeter_{int(V5)}_total_energy") != STATE_UNAVAILABLE
        assert await hass.config_entries.async_unload(result["result"].entry_id)


@pytest.mark.parametrize(
    ("user_input", "errors"),
    [
        ({CONF_ADDRESSES: ""}, {CONF_ADDRESSES: "no_addresses"}),
        ({CONF_ADDRESSES: "12ab"}, {CONF_ADDRESSES: "invalid_address"}),
        ({CONF_ADDRESSES: "10389, 4242"}, {"base": "no_response"}),
        ({CONF_ADDRESSES: "10389", CONF_PORT: "/dev/ttyNOPE-ekm"}, {"base": "cannot_open_port"}),
    ],
)
async def test_flow_errors(
    hass: HomeAssistant, port: str, user_input: dict[str, str], errors: dict[str, str]
) -> None:
    flow_id = await _bus_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_PORT: port, CONF_SINGLE_METER: False, **user_input}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors


async def test_flow_corrupted_answers(hass: HomeAssistant, port: str, bus: VirtualBus) -> None:
    bus.faults.crc = 1.0
    flow_id = await _bus_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_PORT: port, CONF_ADDRESSES: "10389", CONF_SINGLE_METER: False}
    )
    assert result["errors"] == {"base": "bad_response"}


async def test_flow_already_configured(
    hass: HomeAssistant, port: str, loaded_bus: MockConfigEntry
) -> None:
    flow_id = await _bus_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_PORT: port, CONF_ADDRESSES: "10389", CONF_SINGLE_METER: False}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "bus_already_configured"


async def test_reconfigure_and_options(
    hass: HomeAssistant, port: str, loaded_bus: MockConfigEntry
) -> None:
    result = await loaded_bus.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure_rs485"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: port, CONF_ADDRESSES: "10389", CONF_SINGLE_METER: False}
    )
    assert result["step_id"] == "rs485_passwords"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert loaded_bus.data[CONF_METERS] == {V4: {"protocol": "v4"}}
    assert loaded_bus.data[CONF_PASSWORDS] == {V4: PASSWORD}

    result = await async_open_options(hass, loaded_bus.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_SCAN_INTERVAL: 2,
            CONF_STALE_THRESHOLD: 30,
            CONF_FULL_READ_EVERY: 3,
            CONF_METERS: [V4],
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_bus.options[CONF_SCAN_INTERVAL] == 2
    await hass.async_block_till_done()
    assert loaded_bus.state is ConfigEntryState.LOADED


async def test_every_bus_form_renders(
    hass: HomeAssistant,
    port: str,
    loaded_bus: MockConfigEntry,
    rendered: Callable[[Any, str], None],
) -> None:
    """Each RS-485 form, error and abort in its own words, every placeholder filled."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "rs485"}
    )
    rendered(result, "config")
    flow_id = result["flow_id"]
    for user_input in (
        {CONF_PORT: "/dev/ttyNOPE-ekm", CONF_ADDRESSES: "10389"},
        {CONF_PORT: "/dev/ttyNOPE-ekm", CONF_ADDRESSES: "12ab"},
    ):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_SINGLE_METER: False, **user_input}
        )
        assert result["errors"]
        rendered(result, "config")
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_PORT: port, CONF_ADDRESSES: "10389", CONF_SINGLE_METER: False}
    )
    assert result["reason"] == "bus_already_configured"
    rendered(result, "config")
    assert "EKM Push" not in STRINGS_ABORT["bus_already_configured"]

    result = await loaded_bus.start_reconfigure_flow(hass)
    rendered(result, "config")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_PORT: port, CONF_ADDRESSES: "10389, 4242", CONF_SINGLE_METER: False},
    )
    assert result["errors"] == {"base": "no_response"}
    rendered(result, "config")
    hass.config_entries.flow.async_abort(result["flow_id"])

    result = await async_open_options(hass, loaded_bus.entry_id)
    assert result["step_id"] == "bus"
    assert result["description_placeholders"] == {"minimum": "2", "count": "2"}
    rendered(result, "options")
    hass.config_entries.options.async_abort(result["flow_id"])


async def test_failed_probe_does_not_block_the_next_try(hass: HomeAssistant, port: str) -> None:
    """A try with a wrong address, left open: a new flow for the same port goes on."""
    abandoned = await _bus_form(hass)
    result = await hass.config_entries.flow.async_configure(
        abandoned, {CONF_PORT: port, CONF_ADDRESSES: "4242", CONF_SINGLE_METER: False}
    )
    assert result["errors"] == {"base": "no_response"}
    flow_id = await _bus_form(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_PORT: port, CONF_ADDRESSES: "10389", CONF_SINGLE_METER: False}
    )
    assert result["step_id"] == "rs485_passwords"
    hass.config_entries.flow.async_abort(flow_id)
    hass.config_entries.flow.async_abort(abandoned)


# --- entities -------------------------------------------------------------------------------


async def test_entities_per_model(
    hass: HomeAssistant,
    loaded_bus: MockConfigEntry,
    fleet: Fleet,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    snapshot = fleet.meters[V4].snapshot()
    assert float(_state(hass, f"sensor.omnimeter_{int(V4)}_total_energy")) == pytest.approx(
        float(snapshot["kWh_Tot"]), abs=0.02
    )
    assert _state(hass, f"switch.omnimeter_{int(V4)}_relay_1") == "off"
    assert _state(hass, f"select.omnimeter_{int(V4)}_ct_ratio") == str(snapshot["CT_Ratio"])
    assert float(_state(hass, f"number.omnimeter_{int(V4)}_pulse_input_ratio_1")) == 1
    assert _state(hass, f"select.omnimeter_{int(V4)}_maximum_demand_auto_reset") == "off"
    assert hass.states.get(f"button.omnimeter_{int(V4)}_zero_resettable_energy") is not None
    # A v3 meter: sensors, clock and demand, no relays or v4-only settings.
    assert float(_state(hass, f"sensor.omnimeter_{int(V3)}_total_energy")) > 0
    assert hass.states.get(f"button.omnimeter_{int(V3)}_sync_clock") is not None
    assert hass.states.get(f"select.omnimeter_{int(V3)}_ct_ratio") is not None
    for missing in (
        f"switch.omnimeter_{int(V3)}_relay_1",
        f"number.omnimeter_{int(V3)}_pulse_input_ratio_1",
        f"button.omnimeter_{int(V3)}_zero_resettable_energy",
        f"sensor.omnimeter_{int(V3)}_frequency",
    ):
        assert entity_registry.async_get(missing) is None, missing
    hub = device_registry.async_get_device_by_identifier(
        (DOMAIN, f"rs485_{loaded_bus.unique_id}"), loaded_bus.entry_id
    )
    meter = device_registry.async_get_device_by_identifier((DOMAIN, V4), loaded_bus.entry_id)
    assert hub is not None and meter is not None and meter.via_device_id == hub.id
    assert meter.model == "Omnimeter Pulse v.4"
    last_read = entity_registry.async_get(f"sensor.omnimeter_{int(V4)}_last_reading")
    assert last_read is not None and last_read.disabled_by is er.RegistryEntryDisabler.INTEGRATION


async def test_relay_switching_seen_in_state_out(
    hass: HomeAssistant, loaded_bus: MockConfigEntry, fleet: Fleet
) -> None:
    relay_2 = f"switch.omnimeter_{int(V4)}_relay_2"
    await hass.services.async_call("switch", "turn_on", {"entity_id": relay_2}, blocking=True)
    assert fleet.meters[V4].relays == [False, True]
    assert _state(hass, relay_2) == "on"
    reading = loaded_bus.runtime_data.coordinator.data.readings[V4]
    assert reading.values["State_Out"] == 2  # off/on
    await hass.services.async_call("switch", "turn_off", {"entity_id": relay_2}, blocking=True)
    assert fleet.meters[V4].relays == [False, False]
    assert _state(hass, relay_2) == "off"


async def test_set_relay_action_with_duration(
    hass: HomeAssistant, loaded_bus: MockConfigEntry, fleet: Fleet, bus: VirtualBus
) -> None:
    relay_1 = f"switch.omnimeter_{int(V4)}_relay_1"
    await hass.services.async_call(
        DOMAIN, "set_relay", {"entity_id": relay_1, "state": "on", "duration": 30}, blocking=True
    )
    assert fleet.meters[V4].relays[0] is True
    assert _state(hass, relay_1) == "on"
    command = bus.commands[-1]
    assert command.accepted and command.address == V4
    assert command.data.endswith("0030")  # relay 1, closed, 30 s
    # Out of range is refused before anything reaches the meter.
    with pytest.raises(Exception, match="9999"):
        await hass.services.async_call(
            DOMAIN,
            "set_relay",
            {"entity_id": relay_1, "state": "off", "duration": 10000},
            blocking=True,
        )


async def test_wrong_password(hass: HomeAssistant, port: str, fleet: Fleet) -> None:
    entry = bus_entry(port, **{V4: "11112222"})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(
            "switch", "turn_on", {"entity_id": f"switch.omnimeter_{int(V4)}_relay_1"}, blocking=True
        )
    assert raised.value.translation_key == "wrong_password"
    assert fleet.meters[V4].relays == [False, False]


async def test_v3_relay_refused(hass: HomeAssistant, loaded_bus: MockConfigEntry) -> None:
    coordinator = loaded_bus.runtime_data.coordinator
    with pytest.raises(ServiceValidationError) as raised:
        await coordinator.async_command(
            V3, lambda a, pw: coordinator.bus.set_relay(a, 1, True, password=pw)
        )
    assert raised.value.translation_key == "not_supported"


async def test_no_ack_is_command_failed(
    hass: HomeAssistant, loaded_bus: MockConfigEntry, bus: VirtualBus
) -> None:
    bus.faults.once("refuse")
    bus.faults.nak = False
    with pytest.raises(HomeAssistantError):
        await hass.services.async_call(
            "button",
            "press",
            {"entity_id": f"button.omnimeter_{int(V4)}_reset_maximum_demand"},
            blocking=True,
        )


async def test_buttons_selects_numbers(
    hass: HomeAssistant, loaded_bus: MockConfigEntry, fleet: Fleet, bus: VirtualBus
) -> None:
    meter = fleet.meters[V4]
    await hass.services.async_call(
        "button", "press", {"entity_id": f"button.omnimeter_{int(V4)}_sync_clock"}, blocking=True
    )
    assert bus.commands[-1].accepted
    meter.advance(meter.clock.now() if meter.clock else 0)
    await hass.services.async_call(
        "button",
        "press",
        {"entity_id": f"button.omnimeter_{int(V4)}_zero_resettable_energy"},
        blocking=True,
    )
    reading = loaded_bus.runtime_data.coordinator.data.readings[V4]
    assert reading.values["kWh_Rst"] == 0
    await hass.services.async_call(
        "button",
        "press",
        {"entity_id": f"button.omnimeter_{int(V4)}_reset_maximum_demand"},
        blocking=True,
    )
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": f"select.omnimeter_{int(V4)}_ct_ratio", "option": "400"},
        blocking=True,
    )
    assert meter.ct_ratio == 400
    assert _state(hass, f"select.omnimeter_{int(V4)}_ct_ratio") == "400"
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": f"select.omnimeter_{int(V4)}_maximum_demand_period", "option": "30_minutes"},
        blocking=True,
    )
    assert meter.max_demand_period == 2
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": f"number.omnimeter_{int(V4)}_pulse_input_ratio_2", "value": 250},
        blocking=True,
    )
    assert meter.pulse_ratios[1] == 250
    assert float(_state(hass, f"number.omnimeter_{int(V4)}_pulse_input_ratio_2")) == 250


@pytest.mark.parametrize("fault", ["crc", "truncate", "silence", "collision"])
async def test_corrupted_frames_never_reach_entities(
    hass: HomeAssistant, loaded_bus: MockConfigEntry, bus: VirtualBus, fault: str
) -> None:
    total = f"sensor.omnimeter_{int(V4)}_total_energy"
    before = float(_state(hass, total))
    setattr(bus.faults, fault, 1.0)
    await _refresh(hass, loaded_bus)
    assert _state(hass, total) == STATE_UNAVAILABLE  # every read failed: nothing shown
    bus.faults.clear()
    setattr(bus.faults, fault, 0.0)
    await _refresh(hass, loaded_bus)
    assert float(_state(hass, total)) >= before


async def test_noise_echo_and_garbage_are_tolerated(
    hass: HomeAssistant, loaded_bus: MockConfigEntry, bus: VirtualBus, fleet: Fleet
) -> None:
    """One bad frame is retried; echo and garbage between frames are skipped."""
    bus.faults.once("crc", 1)
    bus.faults.echo = True
    bus.faults.garbage = 1.0
    await _refresh(hass, loaded_bus)
    assert loaded_bus.runtime_data.coordinator.last_update_success
    shown = float(_state(hass, f"sensor.omnimeter_{int(V4)}_total_energy"))
    assert shown == pytest.approx(float(fleet.meters[V4].snapshot()["kWh_Tot"]), abs=0.02)


async def test_port_disappears_and_comes_back(
    hass: HomeAssistant, loaded_bus: MockConfigEntry, bus: VirtualBus
) -> None:
    power = f"sensor.omnimeter_{int(V4)}_power"
    await bus.unplug()
    await _refresh(hass, loaded_bus)
    assert _state(hass, power) == STATE_UNAVAILABLE
    await bus.replug()
    await _refresh(hass, loaded_bus)
    assert _state(hass, power) != STATE_UNAVAILABLE


async def test_one_silent_meter_goes_stale_alone(
    hass: HomeAssistant, loaded_bus: MockConfigEntry, fleet: Fleet
) -> None:
    fleet.meters[V3].responsive = False
    await _refresh(hass, loaded_bus)
    assert loaded_bus.runtime_data.coordinator.last_update_success
    assert _state(hass, f"sensor.omnimeter_{int(V4)}_power") != STATE_UNAVAILABLE
    assert "NoResponse" in loaded_bus.runtime_data.coordinator.errors[V3]


async def test_diagnostics_redact_passwords(
    hass: HomeAssistant, loaded_bus: MockConfigEntry
) -> None:
    from custom_components.ekm.diagnostics import async_get_config_entry_diagnostics

    diagnostics = await async_get_config_entry_diagnostics(hass, loaded_bus)
    assert PASSWORD not in repr(diagnostics)
    assert diagnostics["entry"]["data"][CONF_PASSWORDS] == "**REDACTED**"
    assert diagnostics["bus"]["stats"]["sessions"] > 0


async def test_unload_closes_port(hass: HomeAssistant, loaded_bus: MockConfigEntry) -> None:
    bus = loaded_bus.runtime_data.bus
    assert bus is not None and bus.connected
    assert await hass.config_entries.async_unload(loaded_bus.entry_id)
    assert not bus.connected


def test_sim_meter_is_v4() -> None:
    assert SimMeter(address="000000000001", protocol="v5").supports_relays
