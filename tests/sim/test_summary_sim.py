"""The simulated Summary API over real HTTP: periods, DST, paging, fields, errors, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
import itertools
import time
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    DEMO_METER_KEY,
    Fleet,
    SimClock,
)
from ekmsim.mqtt import summarize as mqtt_summarize
from ekmsim.summary import local_to_utc, period_bounds

KEY = DEMO_ACCOUNT_KEY
NOW = datetime(2026, 12, 2, 0, 30, tzinfo=UTC).timestamp()
V3 = "000000010388"
V5 = "000000015635"
SOLAR = "000000000099"
THREE_PHASE = "000300000001"
NEW_YORK = ZoneInfo("America/New_York")


def ms(text: str, zone: Any = UTC) -> int:
    """YYYYMMDDhhmm (wall time in ``zone``) as epoch ms."""
    wall = datetime.strptime(text, "%Y%m%d%H%M")
    return round(wall.replace(tzinfo=zone).timestamp() * 1000)


@pytest.fixture
def world() -> Fleet:
    fleet = Fleet.demo(clock=SimClock(NOW, manual=True))
    fleet.backfill(300)  # five hours of Realtime reads
    return fleet


@pytest.fixture
async def sim(world: Fleet) -> AsyncIterator[CloudSimulator]:
    async with CloudSimulator(world) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(
    http: aiohttp.ClientSession, sim: CloudSimulator, path: str = "/summary", **params: str
) -> tuple[int, str, Any]:
    """GET; returns (HTTP status, content type, JSON or text)."""
    params.setdefault("key", KEY)
    async with http.get(f"{sim.url}{path}", params=params) as response:
        text = await response.text()
        kind = response.content_type
        return response.status, kind, await response.json() if kind.endswith("json") else text


async def summary(
    http: aiohttp.ClientSession, sim: CloudSimulator, path: str = "/summary", **params: str
) -> list[dict[str, Any]]:
    """A Summary request that must answer rows."""
    status, kind, body = await fetch(http, sim, path, **params)
    assert status == 200, body
    assert kind == "application/json", body
    assert isinstance(body, list), body
    return body


def window(start: str, end: str, **extra: str) -> dict[str, str]:
    return {"start_date": start, "end_date": end, "format": "json", **extra}


# --- periods --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "start", "end", "periods"),
    [
        ("15", "202612010000", "202612010300", 12),
        ("hr", "202612010000", "202612011000", 10),
        ("dy", "202611010000", "202611150000", 14),
        ("wk", "202610010000", "202611010000", 5),  # Sun 27 Sep .. Sun 25 Oct (5 weeks)
        ("mo", "202602150000", "202606150000", 5),  # Feb .. Jun
    ],
)
async def test_periods_are_aligned_whole_and_newest_first(
    http: aiohttp.ClientSession,
    sim: CloudSimulator,
    report: str,
    start: str,
    end: str,
    periods: int,
) -> None:
    rows = await summary(http, sim, meters=DEMO_METER, report=report, **window(start, end))
    assert len(rows) == periods
    starts = [r["Start_Time_Stamp_UTC_ms"] for r in rows]
    assert starts == sorted(starts, reverse=True)  # newest first
    for newer, older in itertools.pairwise(rows):
        assert older["End_Time_Stamp_UTC_ms"] == newer["Start_Time_Stamp_UTC_ms"]
    assert rows[-1]["Start_Time_Stamp_UTC_ms"] <= ms(start) < rows[-1]["End_Time_Stamp_UTC_ms"]
    assert rows[0]["Start_Time_Stamp_UTC_ms"] < ms(end) <= rows[0]["End_Time_Stamp_UTC_ms"]
    for row in rows:
        begin = datetime.fromtimestamp(row["Start_Time_Stamp_UTC_ms"] / 1000, UTC)
        assert row["Start_Date"] == f"{begin:%Y-%m-%d %H:%M}"
        assert row["Meter"] == DEMO_METER
        assert row["Protocol"] == "v4"
        match report:
            case "15":
                assert begin.minute % 15 == 0
                assert row["Count"] == 15
            case "hr":
                assert begin.minute == 0
                assert row["Count"] == 60
            case "dy":
                assert (begin.hour, begin.minute) == (0, 0)
            case "wk":
                assert begin.weekday() == 6  # Sunday
            case "mo":
                assert (begin.day, begin.hour) == (1, 0)
        assert float(row["kWh_Tot_Diff"]) > 0


async def test_range_is_one_row_per_meter(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    params = window("202611011030", "202611211745", fields="kWh_Tot_Diff")
    rows = await summary(http, sim, meters=f"{SOLAR}~10389~{V3}", report="range", **params)
    assert [r["Meter"] for r in rows] == [SOLAR, V3, DEMO_METER]  # ascending addresses
    for row in rows:
        assert row["Start_Time_Stamp_UTC_ms"] == ms("202611011030")
        assert row["End_Time_Stamp_UTC_ms"] == ms("202611211745")
        assert row["Count"] == (ms("202611211745") - ms("202611011030")) // 60_000


async def test_in_progress_and_first_periods_are_partial(
    http: aiohttp.ClientSession, sim: CloudSimulator, world: Fleet
) -> None:
    meter = world.meters[DEMO_METER]
    meter.first_report = NOW - 3 * 3600 - 20 * 60  # 21:10 UTC
    rows = await summary(
        http, sim, meters=DEMO_METER, report="hr", **window("202612010000", "202612030000")
    )
    newest = world.latest(DEMO_METER)
    assert newest is not None
    assert rows[0]["End_Time_Stamp_UTC_ms"] == newest["Time_Stamp_UTC_ms"] == NOW * 1000
    assert rows[0]["Start_Time_Stamp_UTC_ms"] == ms("202612020000")
    assert rows[0]["Count"] == 31  # 00:00 .. 00:30 inclusive
    assert rows[-1]["Start_Time_Stamp_UTC_ms"] == meter.first_report * 1000
    assert rows[-1]["Count"] == 50  # 21:10 .. 21:59
    assert len(rows) == 4  # 21, 22, 23, 00 (in progress), and nothing before


# --- local time -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "hours", "labels"),
    [
        ("20260308", 23, ["00:00", "01:00", "03:00", "04:00"]),  # spring forward
        ("20261101", 25, ["00:00", "01:00", "01:00", "02:00"]),  # fall back
    ],
)
async def test_local_hours_across_dst(
    http: aiohttp.ClientSession, sim: CloudSimulator, day: str, hours: int, labels: list[str]
) -> None:
    end = (datetime.strptime(day, "%Y%m%d") + timedelta(days=1)).strftime("%Y%m%d")
    params = window(f"{day}0000", f"{end}0000", timezone="America~New_York", fields="kWh_Tot*")
    rows = await summary(http, sim, meters=DEMO_METER, report="hr", **params)
    oldest_first = rows[::-1]
    assert len(oldest_first) == hours
    stamps = [r["Start_Time_Stamp_UTC_ms"] for r in oldest_first]
    assert stamps == [stamps[0] + 3_600_000 * i for i in range(hours)]  # no UTC hour lost
    assert [r["Start_Date"][-5:] for r in oldest_first[:4]] == labels
    midnight = ms(f"{day}0000", NEW_YORK)
    assert stamps[0] == midnight
    assert oldest_first[-1]["End_Time_Stamp_UTC_ms"] == midnight + hours * 3_600_000

    days = await summary(http, sim, meters=DEMO_METER, report="dy", **params)
    assert len(days) == 1
    length = days[0]["End_Time_Stamp_UTC_ms"] - days[0]["Start_Time_Stamp_UTC_ms"]
    assert length == hours * 3_600_000
    total = sum(int(r["kWh_Tot_Last"].replace(".", "")) - int(r["kWh_Tot_First"].replace(".", ""))
                for r in rows)  # fmt: skip
    assert f"{total / 100:.2f}" == days[0]["kWh_Tot_Diff"]

    quarters = await summary(http, sim, meters=DEMO_METER, report="15", **params)
    assert len(quarters) == hours * 4


def test_wall_times_in_dst_gaps_and_overlaps() -> None:
    # 02:30 does not exist on 2026-03-08: the instant the clock jumps (07:00 UTC).
    gap = local_to_utc(datetime(2026, 3, 8, 2, 30), NEW_YORK)
    assert gap == datetime(2026, 3, 8, 7, tzinfo=UTC).timestamp()
    # 01:30 happens twice on 2026-11-01: the first time (EDT, 05:30 UTC).
    twice = local_to_utc(datetime(2026, 11, 1, 1, 30), NEW_YORK)
    assert twice == datetime(2026, 11, 1, 5, 30, tzinfo=UTC).timestamp()
    plain = local_to_utc(datetime(2026, 7, 1, 12), NEW_YORK)
    assert plain == datetime(2026, 7, 1, 16, tzinfo=UTC).timestamp()
    # Half-hour zones: local hours are on UTC half hours.
    kolkata = period_bounds("hr", ZoneInfo("Asia/Kolkata"), NOW - 7200, NOW)
    assert all(b % 3600 == 1800 for b in kolkata)
    # Lord Howe shifts by 30 minutes: still every local hour, once.
    howe = ZoneInfo("Australia/Lord_Howe")
    start = local_to_utc(datetime(2026, 4, 5, 0), howe)
    bounds = period_bounds("hr", howe, start, start + 6 * 3600)
    hours = [datetime.fromtimestamp(b, howe).strftime("%H:%M") for b in bounds]
    assert hours[:4] == ["00:00", "01:00", "02:00", "03:00"]
    assert len(set(bounds)) == len(bounds)


async def test_gap_and_overlap_dates_in_queries(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    params = window("202603080230", "202603080400", timezone="America~New_York")
    rows = await summary(http, sim, meters=DEMO_METER, report="hr", fields="kWh_Tot_Diff", **params)
    assert [r["Start_Date"][-5:] for r in rows] == ["03:00"]  # 02:30 = 03:00 EDT
    params = window("202611010130", "202611010145", timezone="America~New_York")
    rows = await summary(http, sim, meters=DEMO_METER, report="15", fields="kWh_Tot_Diff", **params)
    assert [r["Start_Time_Stamp_UTC_ms"] for r in rows] == [
        round(datetime(2026, 11, 1, 5, 30, tzinfo=UTC).timestamp() * 1000)
    ]


# --- paging ------------------------------------------------------------------------------------


async def test_paging(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    params = window("202611270000", "202611300000", fields="kWh_Tot_Diff")  # 3 days: 1440 rows
    meters = "~".join(sorted(sim.fleet.meters))
    first = await summary(http, sim, meters=meters, report="15", **params)
    assert len(first) == 1000  # the default limit
    assert len(await summary(http, sim, meters=meters, report="15", limit="5000", **params)) == 1000
    rest = await summary(http, sim, meters=meters, report="15", offset="1000", **params)
    assert len(rest) == 440
    rows = first + rest
    keys = [(r["Start_Time_Stamp_UTC_ms"], r["Meter"]) for r in rows]
    assert len(set(keys)) == 1440
    assert keys == sorted(keys, key=lambda k: (-k[0], k[1]))  # newest period, then address
    middle = await summary(http, sim, meters=meters, report="15", limit="7", offset="998", **params)
    assert middle == rows[998:1005]
    empty = await summary(http, sim, meters=meters, report="15", offset="1440", **params)
    assert empty == []


# --- values --------------------------------------------------------------------------------------


@pytest.fixture
async def day_sim() -> AsyncIterator[CloudSimulator]:
    fleet = Fleet.demo(clock=SimClock(NOW, manual=True))
    fleet.history_len = 1600
    fleet.backfill(1500)  # 25 hours of Realtime reads
    async with CloudSimulator(fleet) as simulator:
        yield simulator


async def test_diffs_telescope_to_the_realtime_change(
    http: aiohttp.ClientSession, day_sim: CloudSimulator
) -> None:
    sim = day_sim
    day = window("202612010000", "202612020000")
    fields = "kWh_Tot*~Rev_kWh_Tot*~Pulse_Cnt_1*~kWh_Ln_1*"
    for address in sim.fleet.meters:
        meter = sim.fleet.meters[address]
        quarters = await summary(http, sim, meters=address, report="15", fields=fields, **day)
        assert len(quarters) == 96
        [daily] = await summary(http, sim, meters=address, report="dy", fields=fields, **day)
        reads = {}
        for stamp in (ms("202612010000"), ms("202612020000")):
            status, _, body = await fetch(
                http, sim, "/readMeter", meters=address, cnt="1", until=str(stamp)
            )
            assert status == 200
            [read] = body["readMeter"]["ReadSet"][0]["ReadData"]
            assert read["Time_Stamp_UTC_ms"] == stamp
            reads[stamp] = read
        begin, end = reads[ms("202612010000")], reads[ms("202612020000")]
        unit = 10**meter.kwh_decimals
        for name in ("kWh_Tot", "Rev_kWh_Tot", "Pulse_Cnt_1", "kWh_Ln_1"):
            if name not in begin:
                continue  # v3 has no per-line registers
            scale = 1 if name.startswith("Pulse") else unit
            total = sum(round(float(r[f"{name}_Diff"]) * scale) for r in quarters)
            change = round((float(end[name]) - float(begin[name])) * scale)
            assert total == change == round(float(daily[f"{name}_Diff"]) * scale), name
            assert daily[f"{name}_First"] == begin[name]
            assert daily[f"{name}_Last"] == end[name]
            assert quarters[-1][f"{name}_First"] == begin[name]
        assert all(float(q["kWh_Tot_Diff"]) >= 0 for q in quarters)
        deltas = [float(q["kWh_Tot_DeltaMax"]) for q in quarters]
        assert all(d <= float(q["kWh_Tot_Diff"]) for d, q in zip(deltas, quarters, strict=True))
        assert max(deltas) > 0


async def test_instantaneous_statistics(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    params = window("202612011400", "202612011800", timezone="UTC")  # 09:00..13:00 at UTC-5
    rows = await summary(http, sim, meters=f"{SOLAR}~{THREE_PHASE}", report="hr", **params)
    solar = [r for r in rows if r["Meter"] == SOLAR]
    assert len(solar) == 4
    for row in solar:
        watts = float(row["RMS_Watts_Tot_Average"])
        energy = float(row["kWh_Tot_Diff"])  # kWh over one hour = mean kW
        assert abs(watts / 1000 - energy) < 0.02
        assert float(row["RMS_Watts_Tot_Min"]) <= watts <= float(row["RMS_Watts_Tot_Max"])
        assert float(row["RMS_Watts_Tot_StdDev"]) > 0
        assert float(row["Rev_kWh_Tot_Diff"]) > 0  # exporting by day
        assert row["RMS_Volts_Ln_1_Average"] == "120.00"
        assert row["RMS_Volts_Ln_3_Average"] == "0.00"  # split phase: line 3 idle
        assert row["Power_Factor_Ln_3_Average"] == "200.00"
        assert row["Line_Freq_Min"] == "59.980"
        amps = float(row["Amps_Ln_1_Average"])
        assert abs(amps - float(row["RMS_Watts_Ln_1_Average"]) / (120 * 0.95)) < 0.02
    three = next(r for r in rows if r["Meter"] == THREE_PHASE)
    assert float(three["RMS_Volts_Ln_3_Average"]) == 120.0
    assert "kWh_Tot_First" in three and three["kWh_Tot_First"].isdigit()  # kWh_Scale 0
    # Deterministic: the same question, the same answer.
    assert rows == await summary(http, sim, meters=f"{SOLAR}~{THREE_PHASE}", report="hr", **params)


async def test_fields_and_wildcards(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    identity = {"Meter", "Protocol", "Count", "Start_Time_Stamp_UTC_ms", "End_Time_Stamp_UTC_ms",
                "Start_Date", "End_Date"}  # fmt: skip
    params = window("202612010000", "202612010100")
    meters = f"10389~{V3}"

    async def keys(fields: str) -> dict[str, set[str]]:
        rows = await summary(http, sim, meters=meters, report="hr", fields=fields, **params)
        return {r["Meter"]: set(r) - identity for r in rows}

    stats = ("First", "Last", "Min", "Max", "Diff", "DeltaMax")
    tot = {f"kWh_Tot_{s}" for s in stats}
    assert await keys("kWh_Tot*") == {DEMO_METER: tot, V3: tot}
    assert await keys("kWh_Tot*~Rev_kWh_Tot*") == {
        a: tot | {f"Rev_kWh_Tot_{s}" for s in stats} for a in (DEMO_METER, V3)
    }
    diffs = await keys("*_Diff")
    assert all(k.endswith("_Diff") for k in diffs[DEMO_METER])
    assert "Reactive_Energy_Tot_Diff" in diffs[DEMO_METER]
    assert "Reactive_Energy_Tot_Diff" not in diffs[V3]  # v3 does not report it
    assert "kWh_Ln_1_Diff" not in diffs[V3]
    assert await keys("kWh_Tot_Diff,Rev_kWh_Tot_Diff") == {
        a: {"kWh_Tot_Diff", "Rev_kWh_Tot_Diff"} for a in (DEMO_METER, V3)
    }  # commas too (one EKM client used them)
    exact = await keys("RMS_Watts_Tot_Average~Line_Freq_Max~Nope")
    assert exact == {DEMO_METER: {"RMS_Watts_Tot_Average", "Line_Freq_Max"},
                     V3: {"RMS_Watts_Tot_Average"}}  # fmt: skip
    everything = await keys("")
    assert len(everything[DEMO_METER]) == 22 * 6 + 18 * 4
    assert len(everything[V3]) == 13 * 6 + 13 * 4


async def test_v2_typing_and_numbers_knob(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    params = window("202612010000", "202612010100", fields="kWh_Tot*~Pulse_Cnt_1_Diff")
    rows = await summary(
        http, sim, "/summary/api/v2/meter", devices=f"15635~{DEMO_METER}", report="hr", **params
    )
    assert [r["Meter"] for r in rows] == [10389, 15635]
    assert [r["Protocol"] for r in rows] == ["v4", "v4"]  # a v5 reports as v4
    for row in rows:
        assert isinstance(row["kWh_Tot_Last"], float)
        assert isinstance(row["Pulse_Cnt_1_Diff"], int)
        assert isinstance(row["Count"], int)
    legacy = await summary(http, sim, meters=f"15635~{DEMO_METER}", report="hr", **params)
    assert legacy[0]["Meter"] == DEMO_METER
    assert isinstance(legacy[0]["kWh_Tot_Last"], str)
    assert float(legacy[1]["kWh_Tot_Last"]) == rows[1]["kWh_Tot_Last"]
    assert legacy[1]["kWh_Tot_Last"].count(".") == 1  # kWh_Scale 1: one decimal
    assert len(legacy[1]["kWh_Tot_Last"].split(".")[1]) == 1
    sim.faults.update({"numbers_as_json": True})
    flipped = await summary(http, sim, meters=f"15635~{DEMO_METER}", report="hr", **params)
    assert flipped[0]["Meter"] == DEMO_METER
    assert flipped[0]["kWh_Tot_Last"] == rows[0]["kWh_Tot_Last"]


# --- errors and statuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"report": "yr"},
        {"report": "mo15"},
        {"start_date": "2026-12-01"},
        {"start_date": ""},
        {"end_date": "202613010000"},
        {"end_date": "202611300000"},  # before the start
        {"end_date": "202612010000"},  # equal to the start
        {"limit": "0"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"meters": ""},
        {"meters": "10389~abc"},
        {"timezone": "Mars~Olympus"},
        {"format": "xml"},
    ],
)
async def test_bad_arguments_answer_plain_text(
    http: aiohttp.ClientSession, sim: CloudSimulator, params: dict[str, str]
) -> None:
    query = {"meters": DEMO_METER, "report": "hr", **window("202612010000", "202612010100")}
    query.update(params)
    status, kind, body = await fetch(http, sim, **query)
    assert (status, kind) == (200, "text/plain")
    assert body.startswith("Error")
    assert "start_date" in body  # it explains the parameters


async def test_v2_bad_arguments(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    status, kind, body = await fetch(http, sim, "/summary/api/v2/meter", report="hr")
    assert (status, kind) == (200, "text/plain")
    assert body.startswith("Error: devices is required")
    status, kind, body = await fetch(http, sim, "/summary/api/v2/firstlast")
    assert body.startswith("Error")


async def test_status_codes(http: aiohttp.ClientSession, sim: CloudSimulator, world: Fleet) -> None:
    base = {"meters": DEMO_METER, "report": "dy"}
    _, _, body = await fetch(http, sim, **base, **window("202001010000", "202002010000"))
    assert body["status_code"] == 1002
    assert "first reported on: 2023-" in body["message"]
    _, _, body = await fetch(http, sim, **base, **window("203001010000", "203002010000"))
    assert body["status_code"] == 1003
    assert "last reported on: 2026-12-02 00:30" in body["message"]

    meter = world.meters[DEMO_METER]
    meter.responsive = False  # at NOW
    world.clock.advance(3 * 86400)
    meter.responsive = True
    world.clock.advance(120)  # two reads since it came back
    _, _, body = await fetch(http, sim, **base, **window("202612030000", "202612040000"))
    assert body == {
        "status_code": 1001,
        "message": f"There is not data for: {DEMO_METER} between 2026-12-03 00:00 and "
        "2026-12-04 00:00",
    }
    rows = await summary(http, sim, **base, **window("202612010000", "202612060000"))
    assert [r["Start_Date"] for r in rows] == ["2026-12-05 00:00", "2026-12-02 00:00",
                                               "2026-12-01 00:00"]  # fmt: skip
    assert rows[0]["Count"] == 2  # back at 00:30: reads at 00:31 and 00:32
    assert rows[0]["End_Time_Stamp_UTC_ms"] == (NOW + 3 * 86400 + 120) * 1000
    assert rows[1]["Count"] == 31  # whole periods; reads until it went silent at 00:30

    other = world.meters[V3]
    other.first_report = world.clock.now() + 86400
    day = window("202612010000", "202612020000")
    _, _, body = await fetch(http, sim, meters=V3, report="hr", **day)
    assert body["status_code"] == 1000
    _, _, body = await fetch(http, sim, "/readMeter", meters=V3)
    assert body["status_code"] == 1000  # Realtime: nothing before the first report either
    # Several meters: the one without data is just absent.
    rows = await summary(http, sim, meters=f"{V3}~10389", report="dy", **day)
    assert [r["Meter"] for r in rows] == [DEMO_METER]


async def test_keys(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    query = {"meters": SOLAR, "report": "hr", **window("202612010000", "202612010100")}
    _, _, body = await fetch(http, sim, key=DEMO_GATEWAY_KEY, **query)
    assert body["status_code"] == 1200  # the solar meter is on the other gateway
    assert SOLAR in body["message"]
    rows = await summary(http, sim, key=DEMO_GATEWAY_KEY, **{**query, "meters": "10389"})
    assert len(rows) == 1
    assert (await fetch(http, sim, key="bogus", **query))[0] == 403
    assert (await fetch(http, sim, key="", **query))[0] == 401
    sim.fleet.revoke(KEY)
    for path in ("/summary", "/summary/api/v2/meter", "/summary/api/v2/firstlast",
                 "/summary/api/v2/gstat"):  # fmt: skip
        assert (await fetch(http, sim, path, **query, devices=SOLAR))[0] == 403


# --- replaced meters and the restart invariant -------------------------------------------------


async def test_replaced_meter_gives_a_negative_diff(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    at = NOW - 7200  # 22:30 UTC on 2026-12-01
    async with http.post(
        f"{sim.url}/_sim/meters/10389", json={"replace_at": at, "initial_kwh": 5}
    ) as response:
        assert response.status == 200
        assert (await response.json())["replaced_at"] == [at]
    params = window("202612012100", "202612020100", fields="kWh_Tot*")
    rows = await summary(http, sim, meters=DEMO_METER, report="hr", **params)
    by_hour = {r["Start_Date"][-5:]: r for r in rows}
    before, spanning, after = by_hour["21:00"], by_hour["22:00"], by_hour["23:00"]
    assert float(before["kWh_Tot_Diff"]) > 0
    assert float(spanning["kWh_Tot_Diff"]) < -1000  # the new meter from 22:30
    assert spanning["kWh_Tot_Min"] == "5.00"
    assert float(spanning["kWh_Tot_Max"]) > float(spanning["kWh_Tot_First"])  # until 22:30
    assert spanning["kWh_Tot_Last"] == after["kWh_Tot_First"]
    assert 5 < float(after["kWh_Tot_First"]) < 6
    assert float(after["kWh_Tot_Diff"]) > 0
    [day] = await summary(http, sim, meters=DEMO_METER, report="range", **params)
    assert float(day["kWh_Tot_Diff"]) < -1000  # negative over the replacement
    assert float(day["kWh_Tot_Min"]) == 5.0
    assert day["kWh_Tot_Max"] == spanning["kWh_Tot_Max"]  # just before the replacement
    _, _, body = await fetch(http, sim, "/readMeter", meters=DEMO_METER, cnt="1")
    assert float(body["readMeter"]["ReadSet"][0]["ReadData"][0]["kWh_Tot"]) < 10

    async with http.post(f"{sim.url}/_sim/meters/10389", json={"replace": True}) as response:
        assert len((await response.json())["replaced_at"]) == 2
    for bad in ({"replace_at": "soon"}, {"replace_at": 0}, {"first_report": True}):
        async with http.post(f"{sim.url}/_sim/meters/10389", json=bad) as response:
            assert response.status == 400, bad


async def test_restart_gives_the_same_history(http: aiohttp.ClientSession) -> None:
    params = {"key": KEY, "meters": "~".join(Fleet.demo().meters), "report": "hr",
              **window("202611300000", "202612020000")}  # fmt: skip
    bodies = []
    for start in (NOW, NOW, NOW + 86400):
        fleet = Fleet.demo(clock=SimClock(start, manual=True))
        async with CloudSimulator(fleet) as sim:
            async with http.get(f"{sim.url}/summary", params=params) as response:
                bodies.append(await response.json())
    assert bodies[0] == bodies[1]
    later = {(r["Meter"], r["Start_Time_Stamp_UTC_ms"]): r for r in bodies[2]}
    complete = [r for r in bodies[0] if r["End_Time_Stamp_UTC_ms"] < NOW * 1000]
    assert complete
    assert all(later[(r["Meter"], r["Start_Time_Stamp_UTC_ms"])] == r for r in complete)
    for row in bodies[0]:
        newer = later[(row["Meter"], row["Start_Time_Stamp_UTC_ms"])]
        assert float(newer["kWh_Tot_Last"]) >= float(row["kWh_Tot_Last"])


def test_mqtt_summaries_are_summary_rows(world: Fleet) -> None:
    start = ms("202612012200")
    mqtt = mqtt_summarize(world.meters[SOLAR], start, start + 900_000, interval_s=60)
    assert mqtt is not None
    assert mqtt["Count"] == 15
    assert mqtt["Start_Time_Stamp_UTC_ms"] == start
    reads = {int(r["Time_Stamp_UTC_ms"]): r for r in world.history(SOLAR)}
    assert mqtt["kWh_Tot_First"] == f"{reads[start]['kWh_Tot']:.2f}"
    assert mqtt["kWh_Tot_Last"] == f"{reads[start + 900_000]['kWh_Tot']:.2f}"


# --- First/Last, GStat, V2 availability, faults ------------------------------------------------


async def test_firstlast(http: aiohttp.ClientSession, sim: CloudSimulator, world: Fleet) -> None:
    world.meters[V3].first_report = NOW + 86400  # no data yet
    rows = await summary(http, sim, "/summary/api/v2/firstlast", devices=f"10389~{V3}~99")
    assert [r["Meter"] for r in rows] == [99, 10389]
    demo = rows[1]
    first = world.meters[DEMO_METER].first_report
    assert demo["First_Report_UTC_ms"] == first * 1000
    assert demo["Last_Report_UTC_ms"] == NOW * 1000
    assert demo["First_Date"] == f"{datetime.fromtimestamp(first, UTC):%Y-%m-%d %H:%M}"
    assert demo["Last_Date"] == "2026-12-02 00:30"
    local = await summary(http, sim, "/summary/api/v2/firstlast", devices="10389",
                          timezone="America~New_York")  # fmt: skip
    assert local[0]["Last_Date"] == "2026-12-01 19:30"
    _, _, body = await fetch(http, sim, "/summary/api/v2/firstlast", devices=V3)
    assert body["status_code"] == 1000
    _, _, body = await fetch(http, sim, "/summary/api/v2/firstlast", key=DEMO_GATEWAY_KEY,
                             devices="99")  # fmt: skip
    assert body["status_code"] == 1200


async def test_meter_key(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    """A meter key reads its meter's summaries only, and sees no gateway's state."""
    query = {"report": "hr", **window("202612010000", "202612010100")}
    rows = await summary(http, sim, key=DEMO_METER_KEY, meters="10389", **query)
    assert [r["Meter"] for r in rows] == [DEMO_METER]
    v2 = await summary(http, sim, "/summary/api/v2/meter", key=DEMO_METER_KEY, devices="10389",
                       **query)  # fmt: skip
    assert [str(r["Meter"]).zfill(12) for r in v2] == [DEMO_METER]  # V2: a number
    first = await summary(http, sim, "/summary/api/v2/firstlast", key=DEMO_METER_KEY,
                          devices="10389")  # fmt: skip
    assert [str(r["Meter"]).zfill(12) for r in first] == [DEMO_METER]
    for path, meters in (("/summary", {"meters": f"10389~{V3}"}),
                         ("/summary/api/v2/meter", {"devices": V3}),
                         ("/summary/api/v2/firstlast", {"devices": SOLAR})):  # fmt: skip
        _, _, body = await fetch(http, sim, path, key=DEMO_METER_KEY, **meters, **query)
        assert body["status_code"] == 1200, path
    assert await summary(http, sim, "/summary/api/v2/gstat", key=DEMO_METER_KEY) == []
    _, _, body = await fetch(http, sim, "/summary/api/v2/gstat", key=DEMO_METER_KEY,
                             gateways=DEMO_GATEWAY_MAC)  # fmt: skip
    assert body["status_code"] == 1200  # not even its own meter's gateway


async def test_gstat(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    rows = await summary(http, sim, "/summary/api/v2/gstat")
    assert rows == [
        {"Gateway": mac, "Status": "online", "Last_Seen_UTC_ms": NOW * 1000,
         "Meters": len(gw.meters)}
        for mac, gw in sim.fleet.gateways.items()
    ]  # fmt: skip
    async with http.post(
        f"{sim.url}/_sim/gateways/{DEMO_GATEWAY_MAC}", json={"online": False}
    ) as response:
        assert (await response.json())["online"] is False
    sim.fleet.advance(600)
    rows = await summary(
        http, sim, "/summary/api/v2/gstat", key=DEMO_GATEWAY_KEY, gateways="4016FA0500CD"
    )
    assert rows == [{"Gateway": DEMO_GATEWAY_MAC, "Status": "offline",
                     "Last_Seen_UTC_ms": NOW * 1000, "Meters": 2}]  # fmt: skip
    _, _, body = await fetch(http, sim, "/summary/api/v2/gstat", key=DEMO_GATEWAY_KEY,
                             gateways="4016fa010226")  # fmt: skip
    assert body["status_code"] == 1200
    async with http.post(f"{sim.url}/_sim/gateways/4016fa999999", json={}) as response:
        assert response.status == 404
    async with http.get(f"{sim.url}/_sim/state") as response:
        state = await response.json()
    assert state["gateways"][0]["online"] is False


async def test_server_without_v2(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    query = {"devices": "10389", "report": "hr", **window("202612010000", "202612010100")}
    assert (await fetch(http, sim, "/summary/api/v2/meter", **query))[0] == 200
    assert (await fetch(http, sim, "/summary/api/v2/iostack", **query))[0] == 404
    async with http.post(f"{sim.url}/_sim/faults", json={"summary_v2": False}) as response:
        assert response.status == 200
    for path in ("meter", "firstlast", "gstat", "iostack"):
        assert (await fetch(http, sim, f"/summary/api/v2/{path}", **query))[0] == 404, path
    assert (await fetch(http, sim, meters="10389", **query))[0] == 200  # legacy still there


async def test_faults_on_summary_endpoints(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    query = {"meters": "10389", "report": "hr", **window("202612010000", "202612010100")}
    sim.faults.update({"fail_next": [429, 500]})
    async with http.get(f"{sim.url}/summary", params={"key": KEY, **query}) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "30"
    assert (await fetch(http, sim, **query))[0] == 500
    assert (await fetch(http, sim, **query))[0] == 200
    sim.faults.update({"error_rates": {"503": 1.0}, "only_endpoints": ["summary_v2", "gstat"]})
    assert (await fetch(http, sim, "/summary/api/v2/meter", devices="10389", **query))[0] == 503
    assert (await fetch(http, sim, "/summary/api/v2/gstat"))[0] == 503
    assert (await fetch(http, sim, "/summary/api/v2/firstlast", devices="10389"))[0] == 200
    assert (await fetch(http, sim, **query))[0] == 200
    sim.faults.reset()
    sim.faults.update({"rate_limit": 2})
    statuses = [(await fetch(http, sim, **query))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert sim.requests["summary"] == 7
    assert sim.requests["summary_v2"] == 1
    assert sim.requests["gstat"] == 1
    assert sim.requests["firstlast"] == 1


# --- speed ---------------------------------------------------------------------------------------


async def test_a_year_of_quarter_hours_pages_quickly(http: aiohttp.ClientSession) -> None:
    fleet = Fleet.generate(10, clock=SimClock(NOW, manual=True), history_days=365)
    meters = "~".join(fleet.meters)
    params = {"key": KEY, "meters": meters, "report": "15", "fields": "kWh_Tot*~Rev_kWh_Tot*",
              **window("202512020000", "202612030000")}  # fmt: skip
    async with CloudSimulator(fleet) as sim:
        timings = []
        for offset in (0, 1000, 200_000, 349_000):
            started = time.perf_counter()
            async with http.get(
                f"{sim.url}/summary", params={**params, "offset": str(offset)}
            ) as response:
                rows = await response.json()
            timings.append(time.perf_counter() - started)
            assert len(rows) == 1000
        async with http.get(f"{sim.url}/summary", params={**params, "offset": "350000"}) as r:
            tail = await r.json()
    assert len(tail) == (365 * 96 + 1) * 10 - 350_000  # + the in-progress quarter
    first = fleet.meters[min(fleet.meters)].first_report
    assert first is not None
    assert tail[-1]["Start_Time_Stamp_UTC_ms"] == first * 1000
    assert min(timings) < 0.25  # about 15-25 ms on a quiet machine; generous for CI
