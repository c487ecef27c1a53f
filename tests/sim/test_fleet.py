"""The simulated EKM world: clock, meter physics, commands, gateways, keys, history."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
import logging
import math
import time

import pytest

from custom_components.ekm.pyekm.catalog import derive
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_GARAGE_MAC,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_GRID_METER,
    DEMO_METER,
    DEMO_METER_KEY,
    DEMO_SOLAR_METER,
    DEMO_SUBPANEL_METER,
    DEMO_THREE_PHASE_METER,
    DEMO_WATER_HEATER_METER,
    HISTORY_LEN,
    V3_FIELDS,
    V4_FIELDS,
    Fleet,
    Read,
    ReadBatch,
    SimClock,
    SimGateway,
    SimMeter,
    _sky,
    default_first_report,
    gateway_key,
    meter_key,
    meter_time_text,
    run_ticker,
)

# 2026-09-21 (a Monday) 05:00:00 UTC = midnight at UTC-5, the meters' default zone.
MIDNIGHT = datetime(2026, 9, 21, 5, tzinfo=UTC).timestamp()
NOON = MIDNIGHT + 12 * 3600
SOLAR = "000000000099"


def demo(start: float = NOON, interval_s: int = 60) -> Fleet:
    return Fleet.demo(clock=SimClock(start, manual=True), interval_s=interval_s)


def test_clock_modes() -> None:
    manual = SimClock(1000.0, manual=True)
    assert manual.now() == 1000.0
    assert manual.advance(5) == 1005.0
    manual.set(50.0)
    assert manual.now() == 50.0

    real = SimClock()
    assert abs(real.now() - time.time()) < 5
    fast = SimClock(0.0, speed=1000.0)
    first = fast.now()
    assert fast.advance(100) >= first + 100


def test_meter_validation() -> None:
    with pytest.raises(ValueError, match="protocol"):
        SimMeter(address="000000000001", protocol="v9")
    with pytest.raises(ValueError, match="12 digits"):
        SimMeter(address="1")
    v3 = SimMeter(address="000000000001", protocol="v3")
    assert (v3.model, v3.firmware, v3.kwh_decimals) == ("1017", "15", 1)
    v5 = SimMeter(address="000000000002", protocol="v5", kwh_scale=1)
    assert (v5.model, v5.protocol, v5.kwh_decimals) == ("1024", "v5", 1)


@pytest.mark.parametrize("address", ["000000010388", DEMO_METER, "000000015635"])
def test_snapshot_reports_the_protocol_field_set(address: str) -> None:
    fleet = demo()
    meter = fleet.meters[address]
    snapshot = meter.snapshot()
    assert set(snapshot) == set(V3_FIELDS if meter.protocol == "v3" else V4_FIELDS)
    assert snapshot["Model"] == meter.model
    assert isinstance(snapshot["kWh_Tot"], float)
    assert isinstance(snapshot["RMS_Watts_Tot"], int)
    assert isinstance(snapshot["Power_Factor_Ln_1"], int)
    assert snapshot["Cos_Theta_Ln_1"] == "0.95 L"
    assert snapshot["Cos_Theta_Ln_3"] == "0.00 C"  # split phase: line 3 idle
    assert snapshot["Power_Factor_Ln_3"] == 200
    assert 118 <= float(snapshot["RMS_Volts_Ln_1"]) <= 122
    assert snapshot["RMS_Watts_Tot"] == sum(int(snapshot[f"RMS_Watts_Ln_{n}"]) for n in (1, 2, 3))
    if meter.protocol != "v3":
        assert 59.98 <= float(snapshot["Line_Freq"]) <= 60.02


def test_kwh_resolution() -> None:
    fleet = demo()
    for address, decimals in (("000000010388", 1), (DEMO_METER, 2), ("000000015635", 1),
                              ("000300000001", 0)):  # fmt: skip
        meter = fleet.meters[address]
        for _ in range(5):
            fleet.advance(60)
            value = float(meter.snapshot()["kWh_Tot"])
            assert round(value, decimals) == value


def test_totals_only_grow_over_a_day() -> None:
    fleet = demo(MIDNIGHT)
    fleet.advance_to()
    monotonic = (
        "kWh_Tot",
        "Rev_kWh_Tot",
        "kWh_Tariff_1",
        "kWh_Tariff_2",
        "Pulse_Cnt_1",
        "Pulse_Cnt_2",
        "Pulse_Cnt_3",
        "Reactive_Energy_Tot",
        "kWh_Ln_1",
        "kWh_Rst",
    )
    previous = {a: fleet.latest(a) for a in fleet.meters}
    watts: dict[str, list[int]] = {a: [] for a in fleet.meters}
    for _ in range(24 * 4):
        fleet.advance(900)
        for address in fleet.meters:
            read = fleet.latest(address)
            before = previous[address]
            assert read is not None
            assert before is not None
            for name in monotonic:
                if name in read:
                    assert float(read[name]) >= float(before[name]), name
            watts[address].append(int(read["RMS_Watts_Tot"]))
            previous[address] = read
    start, end = fleet.history(DEMO_METER)[0], fleet.latest(DEMO_METER)
    assert end is not None
    assert float(end["kWh_Tot"]) > float(start["kWh_Tot"]) + 5
    assert int(end["Pulse_Cnt_1"]) > int(start["Pulse_Cnt_1"])
    # The load curve: the evening peak is well above the small hours.
    curve = watts["000300000001"]
    assert max(curve[17 * 4 : 22 * 4]) > 2 * min(curve[1 * 4 : 5 * 4])


def test_solar_meter_exports_in_daylight_only() -> None:
    fleet = demo(MIDNIGHT + 1800)
    meter = fleet.meters[SOLAR]
    night = meter.snapshot()
    assert night["State_Watts_Dir"] == 1
    fleet.clock.set(MIDNIGHT + 5 * 3600)
    dawn = meter.snapshot()
    assert dawn["Rev_kWh_Tot"] == night["Rev_kWh_Tot"]  # nothing exported at night
    fleet.clock.set(NOON)
    noon = meter.snapshot()
    assert float(noon["Rev_kWh_Tot"]) > float(dawn["Rev_kWh_Tot"]) + 5
    assert noon["State_Watts_Dir"] == 7  # lines 1 and 2 reverse, idle line 3 forward
    assert float(noon["Rev_kWh_Ln_1"]) > float(dawn["Rev_kWh_Ln_1"])
    plain = fleet.meters[DEMO_METER].snapshot()
    assert plain["Rev_kWh_Tot"] == 0.0
    assert plain["State_Watts_Dir"] == 1


# --- the demo home ------------------------------------------------------------------------------

GRID, PV, SUBPANEL, HEATER = HOME = ("000000000099", "000000015635", "000000010388", DEMO_METER)


def _power(read: Read) -> int:
    """What the integration's Power sensor shows: signed on v4/v5, RMS_Watts_Tot on v3."""
    values = dict(read)
    derive(values)
    return int(values.get("Net_Calc_Watts_Tot", values["RMS_Watts_Tot"]))


def _rise(meter: SimMeter, t0: float, t1: float) -> tuple[float, float]:
    """(imported, exported) over [t0, t1] as the history statistics count them."""
    (tot0, rev0), (tot1, rev1) = (
        (float(r["kWh_Tot"]), float(r["Rev_kWh_Tot"]))
        for r in (meter.registers(t, ("kWh_Tot", "Rev_kWh_Tot")) for t in (t0, t1))
    )
    return (tot1 - rev1) - (tot0 - rev0), rev1 - rev0


def test_demo_home_roles() -> None:
    fleet = demo()
    grid, pv, subpanel, heater = (fleet.meters[a] for a in HOME)
    assert (grid.gateway_mac, pv.gateway_mac) == (DEMO_GARAGE_MAC, DEMO_GARAGE_MAC)
    assert (subpanel.gateway_mac, heater.gateway_mac) == (DEMO_GATEWAY_MAC, DEMO_GATEWAY_MAC)
    assert (DEMO_GRID_METER, DEMO_SOLAR_METER, DEMO_SUBPANEL_METER) == (GRID, PV, SUBPANEL)
    assert DEMO_WATER_HEATER_METER == DEMO_METER
    assert grid.solar and not grid.production  # net metering at the grid connection
    assert pv.solar and pv.production  # the panels' output, forward
    assert not subpanel.solar and not heater.solar
    # One set of panels, one local time, one installation day.
    assert grid.solar_peak_w == pv.solar_peak_w == 10_000
    assert {m.utc_offset_s for m in (grid, pv, subpanel, heater)} == {-5 * 3600}
    assert {m.first_report for m in (grid, pv, subpanel, heater)} == {
        default_first_report(DEMO_METER)
    }
    assert heater.base_load_w < subpanel.base_load_w < grid.base_load_w
    three_phase = fleet.meters[DEMO_THREE_PHASE_METER]
    assert (three_phase.lines, three_phase.gateway_mac) == (3, None)  # a separate building


def test_demo_home_powers_add_up_at_every_minute() -> None:
    """Heater < sub-panel < house (= grid + PV) in every read of two days, noise included."""
    fleet = demo(MIDNIGHT)
    fleet.backfill(1)
    exported = produced = 0
    for _ in range(2 * 1440):
        fleet.advance(60)
        grid, pv, subpanel, heater = (_power(fleet.latest(a) or {}) for a in HOME)
        house = grid + pv
        assert 0 < heater < subpanel < house, (fleet.clock.now(), grid, pv, subpanel, heater)
        assert pv >= 0  # a production meter never reads reverse
        # The house (grid + PV) is the grid meter's load within its 2 % wobble.
        load = sum(fleet.meters[GRID].line_parts(fleet.clock.now())[0])
        assert abs(house - load) <= 0.02 * load + 3
        exported += grid < 0
        produced += pv > 0
    assert 1440 / 3 < exported < 1440  # by day the home exports
    assert produced < 1440  # and produces nothing at night
    noon = fleet.meters[PV].snapshot(NOON)
    assert noon["State_Watts_Dir"] == 1 and 9000 < int(noon["RMS_Watts_Tot"]) < 10_200
    assert fleet.meters[PV].snapshot(MIDNIGHT)["RMS_Watts_Tot"] == 0


def test_demo_home_energy_adds_up_in_every_hour() -> None:
    """What the Energy dashboard shows: every hour, devices inside the house's consumption.

    The house's consumption is grid import - export + solar production (the PV meter's
    forward energy), from registers at the meters' own resolutions (0.1 kWh on the v3
    sub-panel and the PV meter), as the history import reads them.
    """
    fleet = demo(MIDNIGHT)
    grid, pv, subpanel, heater = (fleet.meters[a] for a in HOME)
    start = MIDNIGHT - 30 * 86400
    for hour in range(30 * 24):
        t0, t1 = start + 3600 * hour, start + 3600 * (hour + 1)
        imported, exported = _rise(grid, t0, t1)
        produced, reversed_ = _rise(pv, t0, t1)
        assert reversed_ == 0  # the PV meter never counts reverse energy
        house = imported - exported + produced
        panel, water = _rise(subpanel, t0, t1)[0], _rise(heater, t0, t1)[0]
        assert 0 < water < panel < house, (hour, water, panel, house)
        assert exported <= produced  # only PV is returned to the grid
    # The lifetime: the PV meter's forward energy is the production, no reverse at all.
    assert float(pv.registers(NOON)["Rev_kWh_Tot"]) == 0.0
    assert float(pv.registers(NOON)["kWh_Tot"]) > pv.initial_kwh + 50_000


def test_production_meter() -> None:
    clock = SimClock(MIDNIGHT + 3 * 3600, manual=True)
    meter = SimMeter(
        address="000000000077", solar=True, production=True, base_load_w=0.0, clock=clock
    )
    night = meter.snapshot()
    assert (night["RMS_Watts_Tot"], night["Rev_kWh_Tot"], night["State_Watts_Dir"]) == (0, 0.0, 1)
    assert night["RMS_Watts_Max_Demand"] == 0.0
    clock.set(NOON)
    noon = meter.snapshot()
    assert 4800 < int(noon["RMS_Watts_Tot"]) < 5200  # the default 5 kW panels at noon
    assert noon["State_Watts_Dir"] == 1  # forward
    assert noon["Rev_kWh_Tot"] == 0.0
    assert int(noon["RMS_Watts_Ln_1"]) == pytest.approx(int(noon["RMS_Watts_Ln_2"]), rel=0.05)
    assert float(noon["kWh_Tot"]) > float(night["kWh_Tot"]) + 5
    assert meter.line_power(NOON) == [pytest.approx(2500), pytest.approx(2500), 0.0]
    # The load is not the production meter's: base_load_w changes nothing.
    other = SimMeter(
        address="000000000077", solar=True, production=True, base_load_w=900.0, clock=clock
    )
    assert other.registers(NOON) == meter.registers(NOON)
    assert other.line_power(NOON) == meter.line_power(NOON)


def test_sky_is_shared_and_bounded() -> None:
    values = [_sky(NOON + 60 * k) for k in range(600)]
    assert all(0.98 <= v <= 1.02 for v in values)
    assert len(set(values)) > 500  # it changes every minute
    assert _sky(NOON + 5) == _sky(NOON + 59)  # the same within a minute


def test_relays_and_state_out() -> None:
    fleet = demo()
    meter = fleet.meters[DEMO_METER]
    assert meter.snapshot()["State_Out"] == 1
    meter.set_relay(2, True)
    assert meter.snapshot()["State_Out"] == 2
    meter.set_relay(1, True)
    assert meter.snapshot()["State_Out"] == 4
    meter.set_relay(2, False)
    assert meter.snapshot()["State_Out"] == 3
    meter.set_relay(2, True, duration_s=30)  # timed: reverts after 30 s
    fleet.clock.advance(29)
    assert meter.snapshot()["State_Out"] == 4
    fleet.clock.advance(1)
    assert meter.snapshot()["State_Out"] == 3
    assert meter.relays == [True, False]
    with pytest.raises(ValueError, match="Relay"):
        meter.set_relay(3, True)
    with pytest.raises(ValueError, match="Relay"):
        meter.set_relay(1, True, duration_s=10000)
    v3 = fleet.meters["000000010388"]
    assert not v3.supports_relays
    with pytest.raises(ValueError, match="no relays"):
        v3.set_relay(1, True)


def test_meter_time() -> None:
    # 2026-09-20 was a Sunday: WW = 01.
    assert meter_time_text(datetime(2026, 9, 20, 12, 30, 5, tzinfo=UTC).timestamp(), 0) == (
        "26092001123005"
    )
    assert meter_time_text(datetime(2026, 9, 26, 23, 59, 59, tzinfo=UTC).timestamp(), 0) == (
        "26092607235959"
    )
    fleet = demo()
    meter = fleet.meters[DEMO_METER]
    assert meter.snapshot()["Meter_Time"] == "26092102120000"  # local noon at UTC-5
    meter.set_time(datetime(2030, 1, 6, 8, 0, 0))  # naive: meter wall time (a Sunday)
    assert meter.snapshot()["Meter_Time"] == "30010601080000"
    fleet.clock.advance(61)
    assert meter.snapshot()["Meter_Time"] == "30010601080101"
    meter.set_time(datetime(2026, 9, 21, 17, 0, 0, tzinfo=UTC))
    assert meter.snapshot()["Meter_Time"] == "26092102120000"


def test_resets_and_settings() -> None:
    fleet = demo()
    meter = fleet.meters[SOLAR]
    fleet.advance(3600)
    before = meter.snapshot()
    assert float(before["kWh_Rst"]) > 0
    assert float(before["Rev_kWh_Rst"]) > 0
    meter.zero_resettable()
    meter.reset_max_demand()
    after = meter.snapshot()
    assert after["kWh_Rst"] == 0.0
    assert after["Rev_kWh_Rst"] == 0.0
    assert after["kWh_Tot"] == before["kWh_Tot"]
    assert after["RMS_Watts_Max_Demand"] == 0.0
    fleet.advance(600)
    assert float(meter.snapshot()["kWh_Rst"]) > 0
    assert float(meter.snapshot()["RMS_Watts_Max_Demand"]) > 0

    meter.set_ct_ratio(400)
    meter.set_pulse_ratio(2, 250)
    meter.set_pulse_output_ratio(1600)
    meter.set_max_demand_period(3)
    meter.set_max_demand_reset(4)
    snapshot = meter.snapshot()
    assert snapshot["CT_Ratio"] == 400
    assert snapshot["Pulse_Ratio_2"] == 250
    assert snapshot["CF_Ratio"] == 1600
    assert snapshot["Max_Demand_Period"] == 3
    assert snapshot["Max_Demand_Rst"] == 4
    for call in (
        lambda: meter.set_ct_ratio(150),
        lambda: meter.set_pulse_ratio(4, 1),
        lambda: meter.set_pulse_ratio(1, 0),
        lambda: meter.set_pulse_output_ratio(3),
        lambda: meter.set_max_demand_period(0),
        lambda: meter.set_max_demand_reset(5),
    ):
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize(
    ("reset", "days"),
    [(0, 1), (4, 1), (3, 1), (2, 6), (1, 10)],  # off, hourly, daily, weekly, monthly
)
def test_max_demand_auto_reset(reset: int, days: int) -> None:
    """Past a reset boundary the peak restarts: 03:00 is far below the evening peak."""
    fleet = demo(MIDNIGHT + 18 * 3600)  # Monday evening
    meter = fleet.meters[DEMO_METER]
    meter.set_max_demand_reset(reset)
    meter.snapshot()
    peak = float(meter.snapshot(MIDNIGHT + 20 * 3600)["RMS_Watts_Max_Demand"])
    # The next day, the next Sunday (weeks start on Sunday), October 1st: at 03:00.
    later = MIDNIGHT + days * 86400 + 3 * 3600
    demand = float(meter.snapshot(later)["RMS_Watts_Max_Demand"])
    if reset:
        assert demand < peak / 2
    else:
        assert demand >= peak


def test_history_and_listeners(caplog: pytest.LogCaptureFixture) -> None:
    fleet = demo(interval_s=10)
    batches: list[ReadBatch] = []
    unsubscribe = fleet.subscribe(batches.append)

    def broken(batch: ReadBatch) -> None:
        raise RuntimeError("listener bug")

    fleet.subscribe(broken)
    first = fleet.advance_to()
    assert len(first) == len(fleet.meters)
    assert len(batches) == 1
    assert "Fleet listener failed" in caplog.text

    produced = fleet.advance(35)
    assert len(batches) == 4  # one call per interval boundary
    assert len(produced) == 3 * len(fleet.meters)
    stamps = [int(r["Time_Stamp_UTC_ms"]) for r in fleet.history(DEMO_METER)]
    assert stamps == [stamps[0] + 10_000 * i for i in range(4)]
    read = fleet.latest(DEMO_METER)
    assert read is not None
    assert read["Good"] == 1
    assert read["Date"] == "2026-09-21"
    assert read["Time"] == "17:00:30"

    assert fleet.advance_to() == []  # nothing new
    unsubscribe()
    unsubscribe()
    fleet.advance(10)
    assert len(batches) == 4
    assert fleet.latest("999999999999") is None


def test_history_keeps_the_latest_thousand_reads() -> None:
    fleet = demo(interval_s=1)
    fleet.meters = {DEMO_METER: fleet.meters[DEMO_METER]}
    fleet.advance_to()
    fleet.advance(HISTORY_LEN + 500)
    history = fleet.history(DEMO_METER)
    assert len(history) == HISTORY_LEN
    assert history[-1]["Time_Stamp_UTC_ms"] == int(fleet.clock.now()) * 1000


def test_shorter_history() -> None:
    fleet = Fleet.generate(3, history_len=5, clock=SimClock(NOON, manual=True))
    fleet.advance_to()
    fleet.advance(3600)
    assert {len(fleet.history(a)) for a in fleet.meters} == {5}


def test_backfill() -> None:
    fleet = demo()
    reads = fleet.backfill(30)
    assert len(reads) == 30 * len(fleet.meters)
    assert len(fleet.history(DEMO_METER)) == 30


def test_unresponsive_meter_stops_reporting() -> None:
    fleet = demo()
    fleet.advance_to()
    meter = fleet.meters[DEMO_METER]
    meter.responsive = False
    produced = fleet.advance(300)
    assert all(m is not meter for m, _ in produced)
    assert len(fleet.history(DEMO_METER)) == 1
    meter.responsive = True
    fleet.advance(60)
    history = fleet.history(DEMO_METER)
    assert len(history) == 2
    assert float(history[1]["kWh_Tot"]) > float(history[0]["kWh_Tot"])  # energy kept flowing


def test_demo_fleet_and_keys() -> None:
    fleet = demo()
    assert fleet.account_key == DEMO_ACCOUNT_KEY
    assert fleet.gateways[DEMO_GATEWAY_MAC].key == DEMO_GATEWAY_KEY
    assert {m.protocol for m in fleet.meters.values()} == {"v3", "v4", "v5"}
    assert any(m.solar for m in fleet.meters.values())
    assert any(m.gateway_mac is None for m in fleet.meters.values())
    for gw in fleet.gateways.values():
        assert len(gw.mac) == 12
        assert gw.mac == gw.mac.lower()
        decoded = base64.b64decode(gw.key + "=" * (-len(gw.key) % 4)).decode()
        assert ":" in decoded
        assert not gw.key.endswith("=")
        assert all(fleet.meters[a].gateway_mac == gw.mac for a in gw.meters)

    assert fleet.key_type(DEMO_ACCOUNT_KEY) == "account"
    assert fleet.key_type(DEMO_GATEWAY_KEY) == "gateway"
    assert fleet.key_type("nope") is None
    assert fleet.key_type("") is None
    assert fleet.meters_for_key(DEMO_ACCOUNT_KEY) == sorted(fleet.meters)
    assert fleet.meters_for_key(DEMO_GATEWAY_KEY) == ["000000010388", DEMO_METER]
    assert fleet.meters_for_key("nope") is None
    assert fleet.gateways_for_key("nope") == []
    fleet.revoke(DEMO_GATEWAY_KEY)
    assert fleet.key_type(DEMO_GATEWAY_KEY) is None
    assert fleet.revoked_keys == {DEMO_GATEWAY_KEY}
    fleet.restore(DEMO_GATEWAY_KEY)
    assert fleet.key_type(DEMO_GATEWAY_KEY) == "gateway"
    assert list(fleet.all_addresses()) == sorted(fleet.meters)


def test_meter_keys() -> None:
    """A per-meter key (a tenant's) sees its meter only: no gateway, no other meter."""
    fleet = demo()
    assert meter_key(20010389, "Tenant-Key-10389") == DEMO_METER_KEY
    assert base64.b64decode(DEMO_METER_KEY + "==").decode() == "20010389:Tenant-Key-10389"
    assert not DEMO_METER_KEY.endswith("=")
    assert fleet.meter_keys == {DEMO_METER_KEY: DEMO_METER}
    assert fleet.key_type(DEMO_METER_KEY) == "meter"
    assert fleet.meters_for_key(DEMO_METER_KEY) == [DEMO_METER]
    assert fleet.gateways_for_key(DEMO_METER_KEY) == []
    # Account and gateway keys keep their scopes.
    assert fleet.meters_for_key(DEMO_GATEWAY_KEY) == ["000000010388", DEMO_METER]
    assert [gw.mac for gw in fleet.gateways_for_key(DEMO_GATEWAY_KEY)] == [DEMO_GATEWAY_MAC]
    # More keys, also for a meter on no gateway; revoking one leaves the others.
    tenant = meter_key(20000099, "Tenant-Key-99")
    fleet.add_meter_key(tenant, "000000000099")
    fleet.add_meter_key("bG9vc2U6a2V5", DEMO_THREE_PHASE_METER)
    assert fleet.meters_for_key(tenant) == ["000000000099"]
    assert fleet.meters_for_key("bG9vc2U6a2V5") == [DEMO_THREE_PHASE_METER]
    fleet.revoke(DEMO_METER_KEY)
    assert fleet.key_type(DEMO_METER_KEY) is None
    assert fleet.meters_for_key(DEMO_METER_KEY) is None
    assert fleet.key_type(tenant) == "meter"
    fleet.restore(DEMO_METER_KEY)
    assert fleet.meters_for_key(DEMO_METER_KEY) == [DEMO_METER]
    with pytest.raises(KeyError, match="Unknown meter"):
        fleet.add_meter_key("x", "000000000001")
    # A meter that is gone opens nothing (the key stays a meter key).
    del fleet.meters[DEMO_METER]
    assert fleet.meters_for_key(DEMO_METER_KEY) == []
    assert Fleet.generate(3).meter_keys == {}


def test_building_a_fleet_by_hand() -> None:
    clock = SimClock(NOON, manual=True)
    meter = SimMeter(address="000000000042", gateway_mac="4016fa000042")
    fleet = Fleet(clock=clock, meters={meter.address: meter})
    assert meter.clock is clock
    fleet.add_gateway(SimGateway(mac="4016fa000042", name="GW", key=gateway_key(42, "s")))
    fleet.add_meter(meter)
    fleet.add_meter(meter)
    assert fleet.gateways["4016fa000042"].meters == ["000000000042"]
    loose = SimMeter(address="000000000001", first_report=time.time() - 60)
    assert abs(float(loose.snapshot()["kWh_Tot"]) - 1500) < 1  # real clock without a fleet


def test_generate_is_deterministic_and_bounded() -> None:
    a = Fleet.generate(100, seed=3, clock=SimClock(NOON, manual=True))
    b = Fleet.generate(100, seed=3, clock=SimClock(NOON, manual=True))
    c = Fleet.generate(100, seed=4, clock=SimClock(NOON, manual=True))
    assert list(a.meters) == list(b.meters)
    assert [gw.key for gw in a.gateways.values()] == [gw.key for gw in b.gateways.values()]
    assert [gw.key for gw in a.gateways.values()] != [gw.key for gw in c.gateways.values()]
    assert a.meters[min(a.meters)].snapshot() == b.meters[min(b.meters)].snapshot()
    assert len(a.gateways) == 4
    assert all(len(gw.meters) <= 32 for gw in a.gateways.values())
    assert {m.protocol for m in a.meters.values()} == {"v3", "v4", "v5"}
    big = Fleet.generate(1000, per_gateway=20, clock=SimClock(NOON, manual=True))
    assert len(big.meters) == 1000
    assert len(big.gateways) == 50
    assert len(big.advance_to()) == 1000
    for n, per in ((0, 32), (1001, 32), (10, 33)):
        with pytest.raises(ValueError, match="meters"):
            Fleet.generate(n, per_gateway=per)


async def test_ticker_advances_until_stopped() -> None:
    fleet = demo(interval_s=1)
    fleet.clock.manual = False  # sped-up real time
    fleet.clock.speed = 3600.0
    stop = asyncio.Event()
    seen = asyncio.Event()
    fleet.subscribe(lambda batch: seen.set() if len(fleet.history(DEMO_METER)) > 2 else None)
    task = asyncio.create_task(run_ticker(fleet, 0.01, stop))
    await asyncio.wait_for(seen.wait(), 10)
    stop.set()
    await task
    assert len(fleet.history(DEMO_METER)) > 2


def test_logging_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fleet = demo()
    fleet.backfill(3)
    assert caplog.records == []


# --- registers as a function of time -------------------------------------------------------------

NOW = datetime(2026, 12, 1, 15, tzinfo=UTC).timestamp()


def test_restart_invariant() -> None:
    """Two fleets built apart agree at the same time; a later one never reads lower."""
    a, b = demo(NOW), demo(NOW)
    a.advance_to()
    for address in a.meters:
        assert a.meters[address].registers(NOW) == b.meters[address].registers(NOW)
        assert a.meters[address].first_report < NOW - 365 * 86400  # over a year of history
    later = demo(NOW + 3 * 86400 + 1234)
    for address, meter in a.meters.items():
        before = meter.registers(NOW)
        after = later.meters[address].registers(later.clock.now())
        for name, value in before.items():
            assert after[name] >= value, name
        assert after["kWh_Tot"] > before["kWh_Tot"]


def test_reads_come_from_the_register_function() -> None:
    fleet = demo(NOW)
    fleet.backfill(120)
    meter = fleet.meters[SOLAR]
    for read in fleet.history(SOLAR):
        stamp = int(read["Time_Stamp_UTC_ms"]) / 1000
        assert {k: read[k] for k in meter.register_names} == meter.registers(stamp)
    # Evaluated in any order, at any time: the same values.
    assert meter.registers(NOW - 86400) == meter.registers(NOW - 86400)


def test_first_report_and_initial_value() -> None:
    start = NOW - 3600
    fleet = Fleet.generate(3, clock=SimClock(NOW, manual=True), first_report=start)
    meter = next(iter(fleet.meters.values()))
    assert meter.first_report == start
    assert abs(float(meter.registers(start)["kWh_Tot"]) - meter.initial_kwh) <= 1  # resolution
    assert meter.registers(start - 86400) == meter.registers(start)  # flat before
    fleet.backfill(180)  # three hours asked, one exists
    assert len(fleet.history(meter.address)) == 61
    assert int(fleet.history(meter.address)[0]["Time_Stamp_UTC_ms"]) == start * 1000
    assert not meter.reports_at(start - 60)
    year = Fleet.generate(2, clock=SimClock(NOW, manual=True), history_days=365)
    assert {m.first_report for m in year.meters.values()} == {NOW - 365 * 86400}
    days = Fleet.demo(clock=SimClock(NOW + 30, manual=True), history_days=1)
    assert {m.first_report for m in days.meters.values()} == {NOW - 86400 + 60}


def test_future_meter_has_no_reads() -> None:
    fleet = demo(NOW)
    fleet.meters[DEMO_METER].first_report = NOW + 3600
    fleet.backfill(10)
    assert fleet.latest(DEMO_METER) is None
    assert fleet.latest("000000010388") is not None


def test_replace_registers() -> None:
    fleet = demo(NOW)
    fleet.backfill(30)
    meter = fleet.meters[DEMO_METER]
    old = float(meter.registers(NOW)["kWh_Tot"])
    fleet.replace_registers(DEMO_METER, at=NOW - 600, initial_kwh=5)
    assert 5 <= float(meter.registers(NOW - 600)["kWh_Tot"]) < 6
    assert float(meter.registers(NOW - 660)["kWh_Tot"]) > old - 10  # before: unchanged
    assert meter.registers(NOW - 600)["Pulse_Cnt_1"] == 0
    history = fleet.history(DEMO_METER)
    assert float(history[-1]["kWh_Tot"]) < 6  # stored reads after it were rewritten
    assert float(history[-12]["kWh_Tot"]) > 1000
    fleet.advance(600)
    assert float(fleet.latest(DEMO_METER)["kWh_Tot"]) > float(history[-11]["kWh_Tot"])  # type: ignore[index]
    meter.replace_registers()  # now, from 0
    assert meter.registers()["kWh_Tot"] == 0.0
    with pytest.raises(ValueError, match="first report"):
        meter.replace_registers(at=meter.first_report - 1)  # type: ignore[operator]


def test_knob_changes_keep_registers_continuous() -> None:
    fleet = demo(NOON)
    meter = fleet.meters[DEMO_METER]
    before = meter.registers(NOON)
    meter.solar = True
    meter.base_load_w = 2000.0
    meter.power_factor = 0.8
    meter.utc_offset_s = -6 * 3600  # 11:00 local
    meter.lines = 3
    assert meter.registers(NOON) == before
    assert meter.registers(NOON - 3600) != before  # the past keeps its own physics
    fleet.clock.advance(3600)
    after = meter.registers()
    assert float(after["Rev_kWh_Tot"]) > float(before["Rev_kWh_Tot"])  # it exports now
    assert float(after["kWh_Tot"]) > float(before["kWh_Tot"]) + 1


def test_unresponsive_times_are_recorded() -> None:
    fleet = demo(NOW)
    fleet.advance_to()
    meter = fleet.meters[DEMO_METER]
    meter.responsive = False
    assert meter.unresponsive_since == NOW
    assert meter.reporting_end() == NOW
    fleet.advance(600)
    meter.responsive = True
    assert meter.unresponsive_since is None
    assert meter.outages == [(NOW, NOW + 600)]
    assert meter.reporting_end() == math.inf
    assert meter.reports_at(NOW) and not meter.reports_at(NOW + 600)
    assert meter.reports_at(NOW + 660)
    meter.last_report = NOW + 1200
    assert not meter.reports_at(NOW + 1260)
    assert meter.reporting_end() == NOW + 1200
    silent = SimMeter(address="000000000007", responsive=False, clock=fleet.clock)
    assert not silent.reports_at(NOW)
    silent.responsive = True
    now = fleet.clock.now()
    assert not silent.reports_at(now) and silent.reports_at(now + 60)


def test_gateway_online_state() -> None:
    fleet = demo(NOW)
    gateway = fleet.set_gateway_online(DEMO_GATEWAY_MAC, False)
    assert (gateway.online, gateway.last_seen) == (False, NOW)
    fleet.clock.advance(60)
    fleet.set_gateway_online(DEMO_GATEWAY_MAC, False)
    assert gateway.last_seen == NOW  # still the moment it went away
    fleet.set_gateway_online(DEMO_GATEWAY_MAC, True)
    assert (gateway.online, gateway.last_seen) == (True, None)


def test_register_evaluation_is_cheap() -> None:
    fleet = Fleet.generate(200, clock=SimClock(NOW, manual=True))
    meter = fleet.meters[min(fleet.meters)]
    model = meter.register_model
    started = time.perf_counter()
    for i in range(10_000):
        model.units(0, NOW - i * 900, 100.0)
    assert (time.perf_counter() - started) / 10_000 < 50e-6  # a few µs; generous for CI
