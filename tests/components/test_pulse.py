"""Pulse inputs: options, totals and flow rates (cloud and RS-485), history statistics, Energy.

The demo home's grid meter 000000000099 counts the house's water meter on pulse input 1
(0.1 gal per pulse, ekmsim.fleet); every value is checked against the simulator's
registers, read through the cloud APIs and the virtual RS-485 bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.components.recorder.statistics import (
    get_metadata,
    statistics_during_period,
)
from homeassistant.const import CONF_HOST, CONF_PORT, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant, State
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.recorder import get_instance
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache_with_extra_data,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.ekm.const import (
    CONF_ENTRY_TYPE,
    CONF_HISTORY,
    CONF_LAN_KEY,
    CONF_METERS,
    CONF_SCAN_INTERVAL,
    DOMAIN,
    ENTRY_LAN,
    ENTRY_RS485,
)
from custom_components.ekm.pulse import (
    CONF_PULSE_INPUTS,
    PulseInput,
    PulseKind,
    parse_pulse_inputs,
)
from custom_components.ekm.pulse_history import hourly_counts
from custom_components.ekm.pyekm.summary import SummaryPeriod
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_GARAGE_MAC,
    DEMO_GRID_METER,
    DEMO_WATER_GAL_PER_PULSE,
    DEMO_WATER_PULSES_PER_DAY,
    Fleet,
    SimClock,
    SimMeter,
)
from ekmsim.rs485 import VirtualBus
from tests.conftest import Push3Lan

# 2026-11-03 12:00 UTC = 07:00 at the meters (UTC-5): the morning's showers.
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
GRID = DEMO_GRID_METER
WATER = f"sensor.omnimeter_{int(GRID)}_water_input_1"
WATER_FLOW = f"sensor.omnimeter_{int(GRID)}_water_flow_input_1"
ENERGY = f"sensor.omnimeter_{int(GRID)}_energy_input_2"
POWER = f"sensor.omnimeter_{int(GRID)}_power_input_2"
STATISTIC = f"ekm:{GRID}_pulse_1"
WATER_OPTIONS = {GRID: {"1": {"kind": "water", "per_pulse": 0.1, "unit": "gal"}}}
BOTH_OPTIONS = {
    GRID: {
        "1": {"kind": "water", "per_pulse": 0.1, "unit": "gal"},
        "2": {"kind": "electricity", "per_pulse": 1.0, "unit": "Wh"},
    }
}


@pytest.fixture
def fleet() -> Fleet:
    """The demo account with three days of history, on a clock that moves only when told."""
    world = Fleet.demo(clock=SimClock(NOW.timestamp(), manual=True), history_days=3)
    world.backfill(60)
    return world


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder first (statistics, Energy), then ekm."""


@pytest.fixture(autouse=True)
async def at_now(hass: HomeAssistant, request: pytest.FixtureRequest) -> None:
    """Home Assistant's clock at the simulator's (RS-485 runs in real time: its I/O waits)."""
    await hass.config.async_set_time_zone("America/New_York")
    if "fleet_now" not in request.fixturenames:
        request.getfixturevalue("freezer").move_to(NOW)


def pulses(meter: SimMeter, t: datetime, n: int = 1) -> int:
    return int(meter.registers(t.timestamp(), (f"Pulse_Cnt_{n}",))[f"Pulse_Cnt_{n}"])


def value(hass: HomeAssistant, entity_id: str) -> float:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return float(state.state)


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    return entry


async def open_pulse_inputs(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, Any]:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    assert "pulse_inputs" in result["menu_options"]
    return await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "pulse_inputs"}
    )


def inputs(**given: dict[str, Any]) -> dict[str, Any]:
    return {f"input_{n}": given.get(f"input_{n}", {"kind": "nothing"}) for n in (1, 2, 3)}


# --- the options -------------------------------------------------------------------------------


async def test_options_steps(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    entity_registry: er.EntityRegistry,
    rendered: Callable[[Any, str], None],
) -> None:
    fleet.meters[GRID].name = "House (grid)"
    entry = await setup(hass, make_entry(**{CONF_HISTORY: False, CONF_SCAN_INTERVAL: 120}))
    assert not hass.states.async_entity_ids("sensor.house_grid_water")  # bare counts only
    result = await open_pulse_inputs(hass, entry)
    rendered(result, "options")
    assert result["step_id"] == "pulse_inputs"
    assert result["description_placeholders"] == {"configured": "none"}
    selector = result["data_schema"].schema["meter"]
    options = {o["value"]: o["label"] for o in selector.config["options"]}
    assert options[GRID] == f"{GRID} (House (grid))"  # as the other meter lists show it
    assert "000000010388" in options  # v3 meters count pulses too
    result = await hass.config_entries.options.async_configure(result["flow_id"], {"meter": GRID})
    rendered(result, "options")
    assert result["step_id"] == "pulse_meter"
    assert result["description_placeholders"]["meter"] == f"{GRID} (House (grid))"
    flow_id = result["flow_id"]
    for given, error, number in (
        ({"input_1": {"kind": "water", "per_pulse": 0.1, "unit": "kWh"}}, "unit_not_volume", 1),
        ({"input_2": {"kind": "gas", "per_pulse": 1, "unit": "gal"}}, "unit_not_gas_volume", 2),
        ({"input_3": {"kind": "electricity", "per_pulse": 1, "unit": "L"}}, "unit_not_energy", 3),
        ({"input_1": {"kind": "water", "unit": "gal"}}, "per_pulse_invalid", 1),
        ({"input_2": {"kind": "other", "per_pulse": 0, "unit": "L"}}, "per_pulse_invalid", 2),
    ):
        result = await hass.config_entries.options.async_configure(flow_id, inputs(**given))
        rendered(result, "options")
        assert result["errors"] == {"base": error}, given
        assert result["description_placeholders"]["input"] == str(number)
    result = await hass.config_entries.options.async_configure(
        flow_id,
        inputs(
            input_1={"kind": "water", "per_pulse": 0.1, "unit": "gal"},
            input_2={"kind": "electricity", "per_pulse": 1, "unit": "Wh"},
        ),
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done(wait_background_tasks=True)
    # Every other option is kept.
    assert entry.options[CONF_SCAN_INTERVAL] == 120
    assert entry.options[CONF_HISTORY] is False
    assert entry.options[CONF_PULSE_INPUTS] == BOTH_OPTIONS
    read = fleet.history(GRID)[-1]
    water, energy = (
        entity_registry.async_get_entity_id("sensor", DOMAIN, f"1010_{GRID}_{key}")
        for key in ("pulse_water_1", "pulse_electricity_2")
    )
    assert water == "sensor.house_grid_water_input_1"
    assert energy == "sensor.house_grid_energy_input_2"
    assert value(hass, water) == pytest.approx(int(read["Pulse_Cnt_1"]) * 0.1)
    assert value(hass, energy) == pytest.approx(int(read["Pulse_Cnt_2"]))

    # The form shows what is configured; "nothing" removes an input and its entities.
    result = await open_pulse_inputs(hass, entry)
    assert result["description_placeholders"] == {
        "configured": f"{GRID} (House (grid)): input 1 water (0.1 gal per pulse),"
        " input 2 electricity (1 Wh per pulse)"
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], {"meter": GRID})
    fields = result["data_schema"].schema["input_1"].schema.schema
    suggested = {str(k): (k.default() if callable(k.default) else k.description) for k in fields}
    assert suggested["kind"] == "water"
    assert suggested["per_pulse"] == {"suggested_value": 0.1}
    assert suggested["unit"] == {"suggested_value": "gal"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], inputs(input_1={"kind": "water", "per_pulse": 0.1, "unit": "gal"})
    )
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.options[CONF_PULSE_INPUTS] == WATER_OPTIONS
    assert hass.states.get(water) is not None
    assert entity_registry.async_get(energy) is None
    assert entity_registry.async_get("sensor.house_grid_power_input_2") is None
    # All inputs of the meter set to nothing: the meter leaves the option.
    result = await open_pulse_inputs(hass, entry)
    result = await hass.config_entries.options.async_configure(result["flow_id"], {"meter": GRID})
    await hass.config_entries.options.async_configure(result["flow_id"], inputs())
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.options[CONF_PULSE_INPUTS] == {}
    assert entity_registry.async_get(water) is None


async def test_no_meter_with_pulses(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    rendered: Callable[[Any, str], None],
) -> None:
    for meter in fleet.meters.values():
        meter.responsive = False
    fleet.history(GRID).clear()
    for address in fleet.meters:
        fleet.history(address).clear()
    entry = await setup(hass, make_entry(**{CONF_HISTORY: False}))
    result = await open_pulse_inputs(hass, entry)
    rendered(result, "options")
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_pulse_meters"


def test_parser_tolerates_junk() -> None:
    parsed = parse_pulse_inputs(
        {
            CONF_PULSE_INPUTS: {
                "99": {  # leading zeros left out
                    "1": {"kind": "water", "per_pulse": "0.5", "unit": "L"},
                    "2": {"kind": "gas", "per_pulse": 1, "unit": "gal"},  # not a gas unit
                    "3": {"kind": "steam", "per_pulse": 1, "unit": "L"},
                    "4": {"kind": "water", "per_pulse": 1, "unit": "L"},  # no input 4
                    "x": {"kind": "water", "per_pulse": 1, "unit": "L"},
                },
                "000000010389": {
                    "1": {"kind": "other", "per_pulse": 0, "unit": "L"},
                    "2": {"kind": "other", "per_pulse": "nan", "unit": "L"},
                    "3": {"kind": "electricity", "per_pulse": None, "unit": "kWh"},
                },
                "000300000001": ["not", "a", "mapping"],
                "meter": {"1": {"kind": "water", "per_pulse": 1, "unit": "L"}},
                "000000010388": {"1": "water", "2": {"kind": "other", "per_pulse": 2, "unit": 3}},
            }
        }
    )
    assert parsed == {GRID: {1: PulseInput(GRID, 1, PulseKind.WATER, 0.5, "L")}}
    assert parse_pulse_inputs({}) == {}
    assert parse_pulse_inputs({CONF_PULSE_INPUTS: "junk"}) == {}


# --- totals and flow rates -------------------------------------------------------------------


async def test_water_total_and_flow_from_the_cloud(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    entry = await setup(hass, make_entry(**{CONF_HISTORY: False, CONF_PULSE_INPUTS: BOTH_OPTIONS}))
    coordinator = entry.runtime_data.coordinator
    meter = fleet.meters[GRID]
    total = hass.states.get(WATER)
    assert total is not None
    assert float(total.state) == pytest.approx(pulses(meter, NOW) * DEMO_WATER_GAL_PER_PULSE)
    assert total.attributes["device_class"] == "water"
    assert total.attributes["unit_of_measurement"] == "gal"
    assert total.attributes["state_class"] == "total_increasing"
    assert total.attributes["friendly_name"] == "Omnimeter 99 Water input 1"
    assert total.attributes["pulse_count"] == pulses(meter, NOW)
    assert total.attributes["per_pulse"] == 0.1
    assert total.attributes["pulse_ratio"] == 1
    energy = hass.states.get(ENERGY)
    assert energy is not None
    assert energy.attributes["device_class"] == "energy"
    assert energy.attributes["unit_of_measurement"] == "Wh"
    # One reading: no flow yet (honestly unknown, not 0).
    flow = hass.states.get(WATER_FLOW)
    assert flow is not None and flow.state == STATE_UNKNOWN
    assert flow.attributes["device_class"] == "volume_flow_rate"
    assert flow.attributes["unit_of_measurement"] == "gal/min"
    assert flow.attributes["state_class"] == "measurement"
    assert flow.attributes["friendly_name"] == "Omnimeter 99 Water flow input 1"

    async def minutes(count: int) -> datetime:
        fleet.advance(60 * count)
        freezer.tick(timedelta(minutes=count))
        await coordinator.async_refresh()
        await hass.async_block_till_done()
        return datetime.fromtimestamp(fleet.clock.now(), UTC)

    t1 = await minutes(1)
    expected = (pulses(meter, t1) - pulses(meter, NOW)) * 0.1  # gallons in one minute
    assert expected > 0.5  # 07:00, showers
    assert value(hass, WATER_FLOW) == pytest.approx(expected)
    assert value(hass, WATER) == pytest.approx(pulses(meter, t1) * 0.1)
    watts = (pulses(meter, t1, 2) - pulses(meter, NOW, 2)) * 3600 / 60
    assert value(hass, POWER) == pytest.approx(watts)
    power = hass.states.get(POWER)
    assert power is not None and power.attributes["unit_of_measurement"] == "W"
    assert power.attributes["device_class"] == "power"
    # The window: the average of the last five minutes of readings.
    t6 = await minutes(5)
    assert value(hass, WATER_FLOW) == pytest.approx(
        (pulses(meter, t6) - pulses(meter, t1)) * 0.1 / 5
    )
    # After a gap (longer than the stale threshold) the old counts say nothing.
    meter.responsive = False
    await minutes(15)
    assert hass.states.get(WATER_FLOW).state == STATE_UNAVAILABLE  # stale
    meter.responsive = True
    t22 = await minutes(1)
    assert hass.states.get(WATER_FLOW).state == STATE_UNKNOWN
    assert value(hass, WATER) == pytest.approx(pulses(meter, t22) * 0.1)
    t23 = await minutes(1)
    assert value(hass, WATER_FLOW) == pytest.approx((pulses(meter, t23) - pulses(meter, t22)) * 0.1)


async def test_total_never_goes_backwards_and_restores(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
) -> None:
    count = pulses(fleet.meters[GRID], NOW)
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(WATER, str(count * 0.1 + 100), {"per_pulse": 0.1}),
                {"native_value": count * 0.1 + 100, "native_unit_of_measurement": "gal"},
            )
        ],
    )
    entry = await setup(hass, make_entry(**{CONF_HISTORY: False, CONF_PULSE_INPUTS: WATER_OPTIONS}))
    # Lower than before the restart: not trusted.
    assert hass.states.get(WATER).state == STATE_UNAVAILABLE
    coordinator = entry.runtime_data.coordinator
    current = coordinator.data.readings[GRID]

    def push(offset_ms: int, pulse_count: int) -> None:
        coordinator.async_push_readings(
            [
                replace(
                    current,
                    timestamp_ms=current.timestamp_ms + offset_ms,
                    values={**current.values, "Pulse_Cnt_1": pulse_count},
                )
            ]
        )

    push(1000, count + 1001)
    await hass.async_block_till_done()
    assert value(hass, WATER) == pytest.approx((count + 1001) * 0.1)
    push(2000, 0)  # a glitch to 0
    await hass.async_block_till_done()
    assert hass.states.get(WATER).state == STATE_UNAVAILABLE
    assert hass.states.get(WATER_FLOW).state == STATE_UNKNOWN  # a reset is no flow either
    push(3000, count + 1002)
    await hass.async_block_till_done()
    assert value(hass, WATER) == pytest.approx((count + 1002) * 0.1)


async def test_changed_amount_per_pulse_is_a_new_scale(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
) -> None:
    """A restored total counted with another amount does not hold the new one back."""
    count = pulses(fleet.meters[GRID], NOW)
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(WATER, str(count * 1.0), {"per_pulse": 1.0}),
                {"native_value": count * 1.0, "native_unit_of_measurement": "gal"},
            )
        ],
    )
    await setup(hass, make_entry(**{CONF_HISTORY: False, CONF_PULSE_INPUTS: WATER_OPTIONS}))
    assert value(hass, WATER) == pytest.approx(count * 0.1)


@pytest.fixture
def fleet_now() -> Fleet:
    """The demo account in real time, the water meter running fast (pulses every second)."""
    world = Fleet.demo()
    world.meters[GRID].water_pulses_per_day = 86400 * 200.0
    world.advance_to(world.clock.now())
    return world


async def test_totals_and_flow_over_rs485(
    hass: HomeAssistant, fleet_now: Fleet, tmp_path: Path
) -> None:
    """The grid meter on a bus: totals and flow from its polls, as the meter counts."""
    meter = fleet_now.meters[GRID]
    bus = VirtualBus([meter], baud=115200, turnaround=0.005)
    port = str(tmp_path / "ttyEKM")
    await bus.open_pty(port)
    try:
        entry = MockConfigEntry(
            domain=DOMAIN,
            title=f"RS-485 {port}",
            unique_id=port,
            data={CONF_ENTRY_TYPE: ENTRY_RS485, CONF_PORT: port, CONF_METERS: {GRID: {}}},
            options={CONF_SCAN_INTERVAL: 5, CONF_PULSE_INPUTS: BOTH_OPTIONS},
        )
        before = pulses(meter, datetime.now(UTC))
        await setup(hass, entry)
        coordinator = entry.runtime_data.coordinator
        first = coordinator.data.readings[GRID]
        count = first.number("Pulse_Cnt_1")
        assert count is not None
        assert before <= count <= pulses(meter, datetime.now(UTC))
        assert value(hass, WATER) == pytest.approx(count * 0.1)
        assert value(hass, ENERGY) == pytest.approx(first.number("Pulse_Cnt_2"))
        assert hass.states.get(WATER_FLOW).state == STATE_UNKNOWN
        await asyncio.sleep(1.5)
        await coordinator.async_refresh()
        await hass.async_block_till_done()
        second = coordinator.data.readings[GRID]
        seconds = (second.timestamp_ms - first.timestamp_ms) / 1000
        rise = second.number("Pulse_Cnt_1") - count
        assert rise > 0
        assert value(hass, WATER_FLOW) == pytest.approx(rise * 0.1 / seconds * 60)
        assert value(hass, WATER) == pytest.approx(second.number("Pulse_Cnt_1") * 0.1)
        watt_hours = second.number("Pulse_Cnt_2") - first.number("Pulse_Cnt_2")
        assert value(hass, POWER) == pytest.approx(watt_hours / seconds * 3600)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await bus.close()


# --- history statistics ----------------------------------------------------------------------


async def stored_hours(hass: HomeAssistant) -> list[dict[str, Any]]:
    found = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        NOW - timedelta(days=30),
        None,
        {STATISTIC},
        "hour",
        None,
        {"state", "sum"},
    )
    return list(found.get(STATISTIC, []))


def assert_hours_match(meter: SimMeter, rows: list[dict[str, Any]]) -> None:
    first = datetime.fromtimestamp(rows[0]["start"], UTC)
    starts = [row["start"] for row in rows]
    assert starts == [starts[0] + 3600 * i for i in range(len(starts))]
    for row in rows:
        start = datetime.fromtimestamp(row["start"], UTC)
        end = start + timedelta(hours=1)
        assert row["state"] == pytest.approx((pulses(meter, end) - pulses(meter, start)) * 0.1)
        assert row["sum"] == pytest.approx((pulses(meter, end) - pulses(meter, first)) * 0.1)


async def test_history_statistics(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    entry = await setup(hass, make_entry(**{CONF_PULSE_INPUTS: WATER_OPTIONS}))
    await async_wait_recording_done(hass)
    meter = fleet.meters[GRID]
    rows = await stored_hours(hass)
    assert len(rows) >= 3 * 24
    assert datetime.fromtimestamp(rows[-1]["start"], UTC) == NOW - timedelta(hours=1)
    assert rows[0]["start"] == pytest.approx(meter.first_report - meter.first_report % 3600)
    assert_hours_match(meter, rows)
    # A day is a few hundred gallons, mostly in the morning and the evening.
    day = [row["state"] for row in rows[-24:]]
    assert sum(day) == pytest.approx(DEMO_WATER_PULSES_PER_DAY * 0.1, rel=0.02)
    assert max(day) > 10 * min(day)
    meta = await get_instance(hass).async_add_executor_job(
        lambda: get_metadata(hass, statistic_ids={STATISTIC})
    )
    info = meta[STATISTIC][1]
    assert info["source"] == DOMAIN
    assert info["name"] == "Omnimeter 99 water input 1 (EKM history)"
    assert info["unit_of_measurement"] == "gal"
    assert info["unit_class"] == "volume"
    assert info["has_sum"] is True
    assert info["mean_type"] == 0  # StatisticMeanType.NONE
    # No energy series lost its way: the pulse fields came in the same requests.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    assert await stored_hours(hass) == rows  # a restart counts nothing twice
    # Three hours later the sum continues.
    fleet.advance(3 * 3600)
    freezer.tick(timedelta(hours=3))
    await entry.runtime_data.history.async_refresh()
    await async_wait_recording_done(hass)
    after = await stored_hours(hass)
    assert len(after) == len(rows) + 3
    assert after[: len(rows) - 4] == rows[:-4]
    assert_hours_match(meter, after)


async def test_reimport_continues_the_sum(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
) -> None:
    await setup(hass, make_entry(**{CONF_PULSE_INPUTS: WATER_OPTIONS}))
    await async_wait_recording_done(hass)
    rows = await stored_hours(hass)
    start = NOW - timedelta(days=1)
    await hass.services.async_call(
        DOMAIN,
        "import_history",
        {"meters": [_device_id(hass)], "start": start.isoformat()},
        blocking=True,
        return_response=True,
    )
    await async_wait_recording_done(hass)
    again = await stored_hours(hass)
    assert [r["start"] for r in again] == [r["start"] for r in rows]
    for old, new in zip(rows, again, strict=True):
        assert new["sum"] == pytest.approx(old["sum"])


def _device_id(hass: HomeAssistant) -> str:
    devices = dr.async_get(hass).async_get_devices(identifiers={(DOMAIN, GRID)})
    assert len(devices) == 1
    return devices[0].id


def test_hours_bridge_gaps_and_skip_resets() -> None:
    def period(start_h: int, first: float, last: float) -> SummaryPeriod:
        start = start_h * 900_000
        return SummaryPeriod(
            address=GRID,
            start_ms=start,
            end_ms=start + 900_000,
            values={"Pulse_Cnt_1_Min": first, "Pulse_Cnt_1_Max": last},
            extra={},
        )

    periods = [
        period(0, 0, 10),
        period(1, 10, 20),
        # quarter 2 missing: 20 -> 30 in the gap, added to quarter 3
        period(3, 30, 40),
        period(4, 40, 45),
        period(5, 3, 5),  # replaced meter: the drop counts 0
        period(6, 5, 9),
        period(7, 9, 10),
        period(8, 10, 12),  # the hour 8..11 is not complete yet
    ]
    assert hourly_counts(periods, "Pulse_Cnt_1", now_ms=10**12) == [
        (0, 40.0),
        (3_600_000, 5 + 2 + 4 + 1),
    ]
    assert hourly_counts([], "Pulse_Cnt_1", now_ms=0) == []


# --- the Energy dashboard ---------------------------------------------------------------------


async def test_energy_dashboard_accepts_them(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
    hass_ws_client: WebSocketGenerator,
    freezer: FrozenDateTimeFactory,
) -> None:
    entry = await setup(hass, make_entry(**{CONF_PULSE_INPUTS: WATER_OPTIONS}))
    assert await async_setup_component(hass, "energy", {})
    # Two readings (the flow rate has a value) and a compiled statistics period.
    fleet.advance(60)
    freezer.tick(timedelta(minutes=1))
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    do_adhoc_statistics(hass, start=NOW)
    await async_wait_recording_done(hass)
    client = await hass_ws_client(hass)
    sources = [
        {"type": "water", "stat_energy_from": STATISTIC},
        {"type": "water", "stat_energy_from": WATER, "stat_rate": WATER_FLOW},
    ]
    await client.send_json_auto_id({"type": "energy/save_prefs", "energy_sources": sources})
    assert (await client.receive_json())["success"]
    await client.send_json_auto_id({"type": "energy/validate"})
    answer = await client.receive_json()
    assert answer["success"], answer
    assert answer["result"]["energy_sources"] == [[], []]


async def test_totals_and_flow_from_a_push3_on_the_lan(
    hass: HomeAssistant, fleet: Fleet, push3_lan: Push3Lan, freezer: FrozenDateTimeFactory
) -> None:
    """The grid meter read from the Garage Push3's LAN API: the same total and flow."""
    garage = push3_lan.sim.gateway(DEMO_GARAGE_MAC)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"Push3 {garage.host}",
        unique_id=f"lan_{GRID}",
        data={
            CONF_ENTRY_TYPE: ENTRY_LAN,
            CONF_HOST: garage.host,
            CONF_LAN_KEY: garage.key,
            CONF_METERS: [GRID],
        },
        options={CONF_SCAN_INTERVAL: 10, CONF_PULSE_INPUTS: WATER_OPTIONS},
    )
    await setup(hass, entry)
    meter = fleet.meters[GRID]
    assert value(hass, WATER) == pytest.approx(pulses(meter, NOW) * 0.1)
    assert hass.states.get(WATER_FLOW).state == STATE_UNKNOWN
    fleet.advance(60)
    freezer.tick(timedelta(minutes=1))
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()
    later = NOW + timedelta(minutes=1)
    assert value(hass, WATER) == pytest.approx(pulses(meter, later) * 0.1)
    assert value(hass, WATER_FLOW) == pytest.approx(
        (pulses(meter, later) - pulses(meter, NOW)) * 0.1
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
