"""History import: the simulator's Summary API into long-term statistics, with the recorder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.components.recorder.statistics import (
    list_statistic_ids,
    statistics_during_period,
)
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir
from homeassistant.helpers.recorder import get_instance
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.ekm.const import (
    CONF_GATEWAY_KEYS,
    CONF_HISTORY,
    CONF_HISTORY_SINCE,
    CONF_MQTT_CA_FILE,
    CONF_MQTT_SERVER,
    CONF_SERVER,
    DOMAIN,
)
from custom_components.ekm.history import EkmHistoryCoordinator
from custom_components.ekm.repairs import reset_issue_id
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    Fleet,
    SimClock,
    SimMeter,
)
from ekmsim.mqtt import MqttSimulator

# 2026-11-03 12:00 UTC: three days of history cover the end of daylight saving time in
# New York (2026-11-01 02:00 EDT -> 01:00 EST, a 25-hour day).
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
ZONE = "America/New_York"
HOUR = timedelta(hours=1)
SOLAR = "000000000099"


def stat_id(address: str, kind: str) -> str:
    return f"ekm:{address}_{kind}"


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
    """The recorder first (it must exist before Home Assistant starts), then ekm."""


@pytest.fixture
async def hass_ny(
    recorder_mock: Recorder, hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> AsyncIterator[HomeAssistant]:
    """Home Assistant with a recorder, in New York, at NOW."""
    freezer.move_to(NOW)
    await hass.config.async_set_time_zone(ZONE)
    yield hass


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> EkmHistoryCoordinator:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    history = entry.runtime_data.history
    assert history is not None
    return history


async def hours(
    hass: HomeAssistant, statistic: str, since: datetime = NOW - timedelta(days=30)
) -> list[dict[str, Any]]:
    """Every stored hour of a statistic since ``since``, oldest first."""
    found = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        since,
        None,
        {statistic},
        "hour",
        None,
        {"state", "sum"},
    )
    return list(found.get(statistic, []))


def forward(meter: SimMeter, t: datetime) -> float:
    registers = meter.registers(t.timestamp(), ("kWh_Tot", "Rev_kWh_Tot"))
    return float(registers["kWh_Tot"]) - float(registers["Rev_kWh_Tot"])


def reverse(meter: SimMeter, t: datetime) -> float:
    return float(meter.registers(t.timestamp(), ("Rev_kWh_Tot",))["Rev_kWh_Tot"])


def assert_matches_registers(meter: SimMeter, rows: list[dict[str, Any]], kind: str) -> None:
    """Each hour is the register's change over it, and the sum is the change since the start.

    Forward energy is the difference of two quantized registers, so while a meter
    exports it may dip by one quantum: such an hour shows 0 and the next one less
    (never a negative hour), and the sum stays within a quantum of the registers.
    """
    register = forward if kind == "energy_import" else reverse
    quantum = 10.0**-meter.kwh_decimals + 1e-6
    first = datetime.fromtimestamp(rows[0]["start"], UTC)
    for row in rows:
        start = datetime.fromtimestamp(row["start"], UTC)
        change = register(meter, start + HOUR) - register(meter, start)
        assert row["state"] >= 0
        if kind == "energy_export":
            assert row["state"] == pytest.approx(change, abs=1e-6), (meter.address, start)
        total = register(meter, start + HOUR) - register(meter, first)
        assert row["sum"] == pytest.approx(total, abs=quantum), (meter.address, kind, start)


async def test_backfill_every_hour_across_dst(
    hass_ny: HomeAssistant, entry: MockConfigEntry, fleet: Fleet, cloud: CloudSimulator
) -> None:
    """The first setup imports every meter from its first report, hour by hour, exactly."""
    hass = hass_ny
    await setup_entry(hass, entry)
    for address, meter in fleet.meters.items():
        for kind in ("energy_import", "energy_export"):
            rows = await hours(hass, stat_id(address, kind))
            assert rows, (address, kind)
            starts = [row["start"] for row in rows]
            # No hour lost or repeated, through the 25-hour day.
            assert starts == [starts[0] + 3600 * i for i in range(len(starts))]
            assert starts[0] == pytest.approx(meter.first_report - meter.first_report % 3600)
            assert datetime.fromtimestamp(starts[-1], UTC) == NOW - HOUR
            assert_matches_registers(meter, rows, kind)
    # The solar home exports by day.
    assert (await hours(hass, stat_id(SOLAR, "energy_export")))[-1]["sum"] > 1
    ids = {
        s["statistic_id"]: s
        for s in await get_instance(hass).async_add_executor_job(
            list_statistic_ids, hass, None, "sum"
        )
    }
    meta = ids[stat_id(DEMO_METER, "energy_import")]
    assert meta["source"] == DOMAIN
    assert meta["statistics_unit_of_measurement"] == "kWh"
    assert meta["unit_class"] == "energy"
    # The progress sensor.
    state = hass.states.get("sensor.omnimeter_10389_history_import")
    assert state is not None
    assert float(state.state) == 100.0
    assert datetime.fromisoformat(state.attributes["imported_until"]) == NOW


async def test_hourly_poll_continues_the_sum(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    """An hour later the new hour is added; the hours re-read for late data stay the same."""
    hass = hass_ny
    history = await setup_entry(hass, entry)
    before = await hours(hass, stat_id(DEMO_METER, "energy_import"))
    cloud.reset_counts()
    fleet.advance(3 * 3600)
    freezer.tick(timedelta(hours=3))
    await history.async_refresh()
    await async_wait_recording_done(hass)
    after = await hours(hass, stat_id(DEMO_METER, "energy_import"))
    assert len(after) == len(before) + 3
    assert after[: len(before)] == before
    assert_matches_registers(fleet.meters[DEMO_METER], after, "energy_import")
    # One request for every meter at once.
    assert cloud.requests["summary"] == 1


async def test_restart_mid_import_counts_nothing_twice(
    hass_ny: HomeAssistant, entry: MockConfigEntry, fleet: Fleet, cloud: CloudSimulator
) -> None:
    """A 429 stops the first import half-way; a reload resumes where it stopped."""
    hass = hass_ny
    cloud.faults.rate_limit = 2  # two Summary requests, then 429 for a minute
    cloud.faults.only_endpoints = ["summary"]
    cloud.faults.retry_after = "60"
    history = await setup_entry(hass, entry)
    assert not history.last_update_success
    partial = {a: await hours(hass, stat_id(a, "energy_import")) for a in fleet.meters}
    assert any(len(rows) < 3 * 24 for rows in partial.values())
    cloud.faults.reset()
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    for address, meter in fleet.meters.items():
        rows = await hours(hass, stat_id(address, "energy_import"))
        assert datetime.fromtimestamp(rows[-1]["start"], UTC) == NOW - HOUR
        assert_matches_registers(meter, rows, "energy_import")


async def test_history_off_and_statistics_kept_on_unload(
    hass_ny: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
) -> None:
    hass = hass_ny
    entry = make_entry()
    await setup_entry(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert await hours(hass, stat_id(DEMO_METER, "energy_import"))
    off = make_entry(**{CONF_HISTORY: False})
    off.add_to_hass(hass)
    cloud.reset_counts()
    hass.config_entries.async_update_entry(entry, options={CONF_HISTORY: False})
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entry.runtime_data.history is None
    assert cloud.requests["summary"] == 0
    progress = hass.states.get("sensor.omnimeter_10389_history_import")
    assert progress is None or progress.attributes.get("restored")


async def test_meter_added_later_gets_its_history(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    hass = hass_ny
    history = await setup_entry(hass, entry)
    new = fleet.add_meter(
        SimMeter(address="000000077777", protocol="v4", first_report=NOW.timestamp() - 86400)
    )
    fleet.advance(1800)
    freezer.tick(timedelta(minutes=31))  # the account is read again
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)
    await history.async_refresh()  # in case the debouncer held it back
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    rows = await hours(hass, stat_id(new.address, "energy_import"))
    assert len(rows) == 24
    assert_matches_registers(new, rows, "energy_import")


async def test_replaced_meter_repair_flow(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
    rendered: Callable[[Any, str], None],
) -> None:
    """A lower register: unavailable, then a repair issue; confirmed, the sensor goes on."""
    hass = hass_ny
    history = await setup_entry(hass, entry)
    sensor = "sensor.omnimeter_10389_energy_imported"
    assert float(hass.states.get(sensor).state) > 100
    fleet.replace_registers(DEMO_METER, initial_kwh=2.0)
    coordinator = entry.runtime_data.coordinator
    issue = reset_issue_id(entry.entry_id, DEMO_METER)
    for _ in range(3):
        fleet.advance(60)
        freezer.tick(timedelta(minutes=1))
        await coordinator.async_refresh()
        await hass.async_block_till_done()
        assert hass.states.get(sensor).state == "unavailable"
    registry = ir.async_get(hass)
    assert registry.async_get_issue(DOMAIN, issue) is not None

    # The owner confirms through the repair flow (as the Repairs dashboard does).
    assert await async_setup_component(hass, "repairs", {})
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_init(DOMAIN, data={"issue_id": issue})
    assert result["step_id"] == "confirm"
    assert result["description_placeholders"]["register"] == "kWh_Tot"
    rendered(result, "issues.register_reset")
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] == "create_entry"
    await hass.async_block_till_done()
    assert registry.async_get_issue(DOMAIN, issue) is None
    value = float(hass.states.get(sensor).state)
    assert 2.0 <= value < 10
    # Statistics: no negative hour, and the sum goes on.
    fleet.advance(2 * 3600)
    freezer.tick(timedelta(hours=2))
    await history.async_refresh()
    await async_wait_recording_done(hass)
    rows = await hours(hass, stat_id(DEMO_METER, "energy_import"))
    assert all(row["state"] >= 0 for row in rows)
    assert all(b["sum"] >= a["sum"] for a, b in pairwise(rows))


async def test_get_summary_and_import_history_actions(
    hass_ny: HomeAssistant, entry: MockConfigEntry, fleet: Fleet, cloud: CloudSimulator
) -> None:
    hass = hass_ny
    await setup_entry(hass, entry)
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, DEMO_METER), entry.entry_id)
    assert device is not None
    response = await hass.services.async_call(
        DOMAIN,
        "get_summary",
        {
            "meters": [device.id],
            "report": "dy",
            "start": "2026-11-02 00:00:00",
            "end": "2026-11-03 00:00:00",
            "fields": ["kWh_Tot_Diff"],
        },
        blocking=True,
        return_response=True,
    )
    (period,) = response["periods"]
    assert period["meter"] == DEMO_METER
    meter = fleet.meters[DEMO_METER]
    start = datetime(2026, 11, 2, 5, 0, tzinfo=UTC)  # midnight in New York (EST)
    assert datetime.fromisoformat(period["start"]) == start
    expected = float(
        meter.registers((start + timedelta(days=1)).timestamp(), ("kWh_Tot",))["kWh_Tot"]
    )
    expected -= float(meter.registers(start.timestamp(), ("kWh_Tot",))["kWh_Tot"])
    assert period["kWh_Tot_Diff"] == pytest.approx(expected, abs=1e-6)

    before = await hours(hass, stat_id(DEMO_METER, "energy_import"))
    result = await hass.services.async_call(
        DOMAIN,
        "import_history",
        {"meters": [device.id], "start": "2026-11-02 00:00:00"},
        blocking=True,
        return_response=True,
    )
    assert result["hours_imported"] > 24
    await async_wait_recording_done(hass)
    assert await hours(hass, stat_id(DEMO_METER, "energy_import")) == before


@pytest.mark.parametrize("now", [datetime(2026, 3, 10, 18, 0, tzinfo=UTC)])
async def test_spring_dst_without_summary_v2(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    make_entry: Callable[..., MockConfigEntry],
    now: datetime,
) -> None:
    """The 23-hour day (2026-03-08 in New York), a server without V2 (first month probe)."""
    freezer.move_to(now)
    await hass.config.async_set_time_zone(ZONE)
    world = Fleet.demo(clock=SimClock(now.timestamp(), manual=True), history_days=4)
    world.backfill(60)
    async with CloudSimulator(world) as sim:
        sim.faults.summary_v2 = False
        entry = MockConfigEntry(
            domain=DOMAIN,
            title="EKM",
            unique_id="1010",
            data={**make_entry().data, "server": sim.url},
        )
        history = await setup_entry(hass, entry)
        assert history.client.v2_available is False
        assert hass.config_entries.async_entries(DOMAIN)[0].runtime_data.gateway_status is None
        for address, meter in world.meters.items():
            rows = await hours(hass, stat_id(address, "energy_import"), now - timedelta(days=30))
            starts = [row["start"] for row in rows]
            assert starts == [starts[0] + 3600 * i for i in range(len(starts))]
            assert len(starts) == 4 * 24  # UTC hours: none lost in the 23-hour local day
            assert_matches_registers(meter, rows, "energy_import")
        assert sim.requests["summary_v2"] == 0
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_outage_hours_are_not_lost(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A meter silent for two hours: EKM has no periods then; the energy comes after."""
    hass = hass_ny
    history = await setup_entry(hass, entry)
    meter = fleet.meters[DEMO_METER]
    meter.responsive = False
    fleet.advance(2 * 3600 + 600)
    meter.responsive = True
    fleet.advance(3600 - 600 + 1800)
    freezer.tick(timedelta(hours=3, minutes=30))
    await history.async_refresh()
    await async_wait_recording_done(hass)
    rows = await hours(hass, stat_id(DEMO_METER, "energy_import"))
    last = datetime.fromtimestamp(rows[-1]["start"], UTC)
    assert last == NOW + 2 * HOUR
    # Every hour up to the outage, none while EKM had nothing, and the total is whole.
    total = forward(meter, last + HOUR) - forward(
        meter, datetime.fromtimestamp(rows[0]["start"], UTC)
    )
    assert rows[-1]["sum"] == pytest.approx(total, abs=0.011)
    assert all(row["state"] >= 0 for row in rows)


async def test_rate_limit_pauses_and_resumes(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
) -> None:
    hass = hass_ny
    cloud.faults.fail_next = [429]
    cloud.faults.only_endpoints = ["summary"]
    history = await setup_entry(hass, entry)
    assert not history.last_update_success
    assert history.last_exception is not None
    cloud.faults.reset()
    await history.async_refresh()
    await async_wait_recording_done(hass)
    assert history.last_update_success
    for address, meter in fleet.meters.items():
        rows = await hours(hass, stat_id(address, "energy_import"))
        assert len(rows) == 3 * 24
        assert_matches_registers(meter, rows, "energy_import")


async def test_gateway_status(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
) -> None:
    hass = hass_ny
    await setup_entry(hass, entry)
    sensor = "binary_sensor.demo_push3_ekm_cloud_status"
    assert hass.states.get(sensor).state == "on"
    fleet.set_gateway_online("4016fa0500cd", False)
    status = entry.runtime_data.gateway_status
    assert status is not None
    await status.async_refresh()
    await hass.async_block_till_done()
    state = hass.states.get(sensor)
    assert state.state == "off"
    assert "Last_Seen_UTC_ms" in state.attributes
    cloud.faults.fail_next = [500]
    await status.async_refresh()
    await hass.async_block_till_done()
    assert hass.states.get(sensor).state == "unavailable"


async def test_mqtt_summary_message_runs_the_import(
    recorder_mock: Recorder, hass: HomeAssistant, tmp_path: Any
) -> None:
    """A Push3's summary message asks for a Summary run at once (no hour's wait).

    Real time here (the MQTT stream needs a running clock): the simulated world lags
    two hours behind, so the hours it adds are complete for Home Assistant at once.
    """
    lag = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 2 * HOUR
    world = Fleet.demo(clock=SimClock(lag.timestamp(), manual=True), history_days=1)
    world.backfill(60)
    async with CloudSimulator(world) as cloud:
        broker = MqttSimulator(world)
        await broker.start(host="127.0.0.1", port=0, cert_dir=tmp_path)
        try:
            entry = MockConfigEntry(
                domain=DOMAIN,
                title="EKM",
                unique_id="1010",
                data={CONF_API_KEY: DEMO_ACCOUNT_KEY, CONF_SERVER: cloud.url},
                options={
                    CONF_GATEWAY_KEYS: {DEMO_GATEWAY_KEY: DEMO_GATEWAY_MAC},
                    CONF_MQTT_SERVER: broker.url,
                    CONF_MQTT_CA_FILE: str(broker.ca_file),
                },
            )
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()  # the push stream runs for good
            history = entry.runtime_data.history
            assert history is not None

            def imported_until(hour: datetime) -> bool:
                meter = history.data.get(DEMO_METER)
                return meter is not None and meter.last_hour_ms == hour.timestamp() * 1000

            await until(hass, lambda: imported_until(lag - HOUR))
            await until(
                hass, lambda: all(g.connected for g in entry.runtime_data.push.gateways.values())
            )
            cloud.reset_counts()
            world.advance(3660)  # the broker publishes the quarter hours' summaries
            await until(hass, lambda: imported_until(lag))
            assert broker.summary_messages >= 1
            assert cloud.requests["summary"] >= 1
            assert await hass.config_entries.async_unload(entry.entry_id)
        finally:
            await broker.stop()


async def until(hass: HomeAssistant, condition: Callable[[], bool], limit: float = 20) -> None:
    """Wait (without asserting on time) until the condition holds."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.02)
            await hass.async_block_till_done()


async def test_action_errors(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
) -> None:
    hass = hass_ny
    await setup_entry(hass, entry)
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, DEMO_METER), entry.entry_id)
    gateway = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, DEMO_GATEWAY_MAC), entry.entry_id
    )
    assert device is not None and gateway is not None
    day = {"start": "2026-11-02 00:00:00", "end": "2026-11-03 00:00:00", "report": "dy"}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("get_summary", {"meters": [gateway.id], **day}, "not_a_meter"),
        ("get_summary", {"meters": ["nope"], **day}, "not_a_meter"),
        (
            "get_summary",
            {"meters": [device.id], **day, "end": "2026-11-01 00:00:00"},
            "end_before_start",
        ),
        (
            "import_history",
            {"meters": [device.id], "start": "2027-01-01 00:00:00"},
            "start_in_future",
        ),
    ]
    for action, data, key in cases:
        with pytest.raises(ServiceValidationError) as err:
            await hass.services.async_call(
                DOMAIN, action, data, blocking=True, return_response=True
            )
        assert err.value.translation_key == key, (action, data)
    cloud.faults.fail_next = [429]
    with pytest.raises(HomeAssistantError) as failure:
        await hass.services.async_call(
            DOMAIN,
            "get_summary",
            {"meters": [device.id], **day},
            blocking=True,
            return_response=True,
        )
    assert failure.value.translation_key == "rate_limited"
    cloud.faults.fail_next = [500]
    with pytest.raises(HomeAssistantError) as failure:
        await hass.services.async_call(
            DOMAIN,
            "import_history",
            {"meters": [device.id], "start": "2026-11-02 00:00:00"},
            blocking=True,
            return_response=True,
        )
    assert failure.value.translation_key == "communication_error"
    # Fifteen-minute periods of most of a year are more than one answer should hold.
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "get_summary",
            {
                "meters": [device.id],
                "report": "15",
                "start": "2026-01-01 00:00:00",
                "end": "2026-11-03 00:00:00",
            },
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "too_many_periods"
    # Not loaded.
    assert await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "get_summary",
            {"meters": [device.id], **day},
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "entry_not_loaded"


async def test_history_off_action_and_diagnostics(
    hass_ny: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
    hass_client: Any,
) -> None:
    hass = hass_ny
    entry = make_entry(**{CONF_HISTORY: False})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, DEMO_METER), entry.entry_id)
    assert device is not None
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "import_history",
            {"meters": [device.id], "start": "2026-11-02 00:00:00"},
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "history_off"
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["history"] is None
    assert diagnostics["gateway_status"]["4016fa0500cd"]["online"] is True


async def test_diagnostics_show_each_statistic(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
    hass_client: Any,
) -> None:
    hass = hass_ny
    await setup_entry(hass, entry)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    history = diagnostics["history"]
    assert history["last_update_success"] is True
    assert history["v2_available"] is True
    imported = history["statistics"][stat_id(DEMO_METER, "energy_import")]
    assert datetime.fromisoformat(imported["last_hour"]) == NOW - HOUR
    assert DEMO_ACCOUNT_KEY not in str(diagnostics)


async def test_since_option_and_a_meter_without_history(
    hass_ny: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    fleet: Fleet,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Import history since a day; a meter that has not reported yet is asked again later."""
    hass = hass_ny
    late = fleet.add_meter(
        SimMeter(address="000000088888", protocol="v4", first_report=NOW.timestamp() + 7200)
    )
    entry = make_entry(**{CONF_HISTORY_SINCE: "2026-11-02"})
    history = await setup_entry(hass, entry)
    rows = await hours(hass, stat_id(DEMO_METER, "energy_import"))
    first = datetime.fromtimestamp(rows[0]["start"], UTC)
    assert first == datetime(2026, 11, 2, 5, 0, tzinfo=UTC)  # midnight in New York (EST)
    assert rows[0]["sum"] == pytest.approx(rows[0]["state"])  # the sum starts there
    assert await hours(hass, stat_id(late.address, "energy_import")) == []
    assert history.data[late.address].started_ms is None
    # Two hours later the new meter reports; EKM is asked again after six hours.
    fleet.advance(5 * 3600)
    freezer.tick(timedelta(hours=5))
    await history.async_refresh()
    await async_wait_recording_done(hass)
    assert await hours(hass, stat_id(late.address, "energy_import")) == []  # not asked yet
    fleet.advance(2 * 3600)
    freezer.tick(timedelta(hours=2))
    await history.async_refresh()
    await async_wait_recording_done(hass)
    assert len(await hours(hass, stat_id(late.address, "energy_import"))) == 5


async def test_long_silence_is_bridged(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A meter silent for three days: later runs do not re-read all of it, and the energy
    it counted meanwhile lands in the first hour it reports again (the sum stays whole)."""
    hass = hass_ny
    history = await setup_entry(hass, entry)
    meter = fleet.meters[DEMO_METER]
    meter.responsive = False
    for _ in range(3):
        fleet.advance(86400)
        freezer.tick(timedelta(days=1))
        await history.async_refresh()
    cloud.reset_counts()
    await history.async_refresh()
    assert cloud.requests["summary"] == 1  # one small request, not three days again
    meter.responsive = True
    fleet.advance(2 * 3600)
    freezer.tick(timedelta(hours=2))
    await history.async_refresh()
    await async_wait_recording_done(hass)
    rows = await hours(hass, stat_id(DEMO_METER, "energy_import"))
    start = datetime.fromtimestamp(rows[0]["start"], UTC)
    end = datetime.fromtimestamp(rows[-1]["start"], UTC) + HOUR
    assert rows[-1]["sum"] == pytest.approx(forward(meter, end) - forward(meter, start), abs=0.011)


@pytest.mark.parametrize(("reports", "probes"), [(["15", "hr", "dy"], 2), (["15"], 2)])
async def test_first_report_on_a_server_with_few_reports(
    hass_ny: HomeAssistant,
    entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
    reports: list[str],
    probes: int,
) -> None:
    """No V2, no monthly (or daily) report: the import still starts at the first report."""
    hass = hass_ny
    cloud.faults.summary_v2 = False
    cloud.faults.summary_reports = reports
    await setup_entry(hass, entry)
    for address, meter in fleet.meters.items():
        rows = await hours(hass, stat_id(address, "energy_import"))
        assert len(rows) == 3 * 24, address
        assert_matches_registers(meter, rows, "energy_import")
    probed = [q["report"] for name, q in cloud.request_log if name == "summary"][:probes]
    assert probed == ["mo", "dy"]


async def test_history_import_sensor_stays_out_of_the_activity_log(
    hass_ny: HomeAssistant, entry: MockConfigEntry, fleet: Fleet, cloud: CloudSimulator
) -> None:
    """The progress is a percentage (the logbook skips numbers with a unit); the old
    timestamp sensor it replaces leaves the entity registry."""
    hass = hass_ny
    registry = er.async_get(hass)
    entry.add_to_hass(hass)
    old = registry.async_get_or_create(
        "sensor", DOMAIN, f"{entry.unique_id}_{DEMO_METER}_history_imported_until",
        config_entry=entry,
    )  # fmt: skip
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert registry.async_get(old.entity_id) is None
    state = hass.states.get("sensor.omnimeter_10389_history_import")
    assert state is not None
    assert state.attributes["unit_of_measurement"] == "%"
    assert state.attributes["state_class"] == "measurement"
