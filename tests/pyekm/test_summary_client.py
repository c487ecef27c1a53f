"""pyekm's Summary client: pure parsing and window planning, then over real HTTP.

A tiny local Summary server (FakeSummary) covers what the simulator cannot be made to do
(oldest-first answers, ``Meter`` as a number in legacy, numeric-string timestamps, odd
fields, canned bodies); the simulator tests follow at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
import itertools
import json
import logging
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
import pytest

from custom_components.ekm.pyekm import (
    SUMMARY_SERVER,
    SUMMARY_V2_SERVER,
    EkmApiError,
    EkmForbiddenError,
    EkmRateLimitError,
    EkmRequestError,
    EkmResponseError,
    EkmServerError,
    EkmSummaryClient,
    Report,
    SummaryPeriod,
    parse_summary,
)
from custom_components.ekm.pyekm.summary import (
    MAX_METERS_PER_REQUEST,
    MAX_ROWS_PER_REQUEST,
    epoch_ms,
    period_after,
    plan_windows,
    split_meters,
    wall_end,
    wall_instant,
    wall_start,
    zone_info,
    zone_param,
)
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_ACCOUNT_KEY, DEMO_GATEWAY_KEY, DEMO_METER, Fleet, SimClock

NY = ZoneInfo("America/New_York")
KEY = DEMO_ACCOUNT_KEY  # a known secret: the autouse leak guard checks every log record
MS = 1000
HOUR_MS = 3_600_000
A, B = DEMO_METER, "000000010388"
SOLAR_METER = "000000000099"  # not on the demo gateway key's gateway

# --- A tiny Summary server -----------------------------------------------------------------


@dataclass(kw_only=True)
class Canned:
    """One canned answer."""

    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class FakeSummary:
    """Summary rows of made-up meters (address -> first and last report, ms).

    Period boundaries are computed here independently of pyekm: quarter hours and hours
    in UTC steps (right for whole-hour zones), days from local calendar dates.
    """

    meters: dict[str, tuple[int, int]] = field(default_factory=dict)
    oldest_first: bool = False
    meter_as_number: bool = False
    stamps_as_strings: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    bad_rows: list[Any] = field(default_factory=list)  # added to every page
    ignore_offset: bool = False
    v2: bool = True
    canned: list[Canned] = field(default_factory=list)  # served first, in order
    first_last: list[Any] = field(default_factory=list)
    gstat: list[Any] = field(default_factory=list)
    log: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    page_sizes: list[int] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/summary", self._summary)
        app.router.add_get("/summary/api/v2/meter", self._summary)
        app.router.add_get("/summary/api/v2/firstlast", self._listing)
        app.router.add_get("/summary/api/v2/gstat", self._listing)
        return app

    def queries(self, path: str = "/summary") -> list[dict[str, str]]:
        return [query for logged, query in self.log if logged == path]

    def _canned(self, request: web.Request) -> web.Response | None:
        self.log.append((request.path, {k: v for k, v in request.query.items() if k != "key"}))
        self.keys.append(request.query.get("key", ""))
        if request.path.startswith("/summary/api/v2/") and not self.v2:
            return web.json_response({"error": "Not Found"}, status=404)
        if self.canned:
            answer = self.canned.pop(0)
            return web.Response(
                status=answer.status,
                text=answer.body,
                content_type=answer.content_type,
                headers=answer.headers,
            )
        return None

    async def _listing(self, request: web.Request) -> web.Response:
        rows = self.gstat if request.path.endswith("gstat") else self.first_last
        return self._canned(request) or web.json_response(rows)

    async def _summary(self, request: web.Request) -> web.Response:
        canned = self._canned(request)
        if canned is not None:
            return canned
        query = request.query
        zone = ZoneInfo(query.get("timezone", "UTC").replace("~", "/"))
        start, end = wall(query["start_date"], zone), wall(query["end_date"], zone)
        wanted = query.get("meters") or query["devices"]
        addresses = sorted(a.zfill(12) for a in wanted.split("~"))
        rows: list[dict[str, Any]] = []
        for begin, finish in periods(query["report"], start, end, zone):
            for address in addresses:
                first, last = self.meters.get(address, (0, -1))
                if first < finish and last >= begin:
                    rows.append(self._row(address, max(begin, first), min(finish, last), zone))
        self.page_sizes.append(len(rows))
        if not rows:
            return web.json_response({"status_code": 1001, "message": "There is not data"})
        if not self.oldest_first:
            rows.sort(key=lambda r: int(r["Start_Time_Stamp_UTC_ms"]), reverse=True)
        offset = 0 if self.ignore_offset else int(query.get("offset", "0"))
        limit = int(query.get("limit", "1000"))
        return web.json_response(rows[offset : offset + limit] + self.bad_rows)

    def _row(self, address: str, begin: int, finish: int, zone: ZoneInfo) -> dict[str, Any]:
        def stamp(ms: int) -> int | str:
            return str(ms) if self.stamps_as_strings else ms

        local = datetime.fromtimestamp(begin / MS, UTC).astimezone(zone)
        return {
            "Meter": int(address) if self.meter_as_number else address,
            "Protocol": "v4",
            "Count": (finish - begin) // 60_000,
            "Start_Time_Stamp_UTC_ms": stamp(begin),
            "End_Time_Stamp_UTC_ms": stamp(finish),
            "Start_Date": local.strftime("%Y-%m-%d %H:%M"),
            "kWh_Tot_Diff": f"{(finish - begin) / HOUR_MS:.2f}",
            "RMS_Watts_Tot_Average": 1000,
            **self.extra,
        }


def wall(text: str, zone: ZoneInfo) -> int:
    """EKM's reading of a wall time: the first occurrence of an ambiguous one."""
    return int(datetime.strptime(text, "%Y%m%d%H%M").replace(tzinfo=zone).timestamp() * MS)


def periods(report: str, start: int, end: int, zone: ZoneInfo) -> list[tuple[int, int]]:
    """(start, end) ms of every period overlapping [start, end)."""
    if report == "range":
        return [(start, end)]
    if report in ("15", "hr"):
        step = (15 if report == "15" else 60) * 60 * MS
        return [(t, t + step) for t in range(start - start % step, end, step)]
    assert report == "dy", report
    day = datetime.fromtimestamp(start / MS, zone).date()
    result = []
    while (begin := midnight(day, zone)) < end:
        result.append((begin, midnight(day + timedelta(days=1), zone)))
        day += timedelta(days=1)
    return result


def midnight(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * MS)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def v2_available(client: EkmSummaryClient) -> bool | None:
    """The property, read through a call (so mypy does not narrow it between reads)."""
    return client.v2_available


def ms(when: datetime) -> int:
    return int(when.timestamp() * MS)


@pytest.fixture
def fake() -> FakeSummary:
    return FakeSummary(meters={A: (0, 2**53), B: (0, 2**53)})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
async def fake_url(fake: FakeSummary) -> AsyncIterator[str]:
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def client(fake_url: str, session: aiohttp.ClientSession) -> EkmSummaryClient:
    return EkmSummaryClient(session, KEY, server=fake_url + "/", timeout=5)


def assert_no_secret(err: BaseException, url: str = "") -> None:
    for text in (str(err), repr(err)):
        assert KEY not in text
        assert "key=" not in text
        if url:
            assert url not in text


# --- Parsing -------------------------------------------------------------------------------


def test_parse_any_order_and_typing() -> None:
    rows = [
        {"Meter": 10389, "Start_Time_Stamp_UTC_ms": "7200000", "End_Time_Stamp_UTC_ms": 9e6,
         "Count": 15, "kWh_Tot_Diff": "1.25", "Start_Date": "1970-01-01 02:00"},
        {"Meter": "10388", "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 900000,
         "Protocol": "v3", "Weird": [1, {"x": None}], "Flag": True, "Nothing": None,
         "Huge": "Infinity", "Blank": " ", "Spaced": " 2.5 ", "Float_Meter": 1.5},
        {"Meter": 10389.0, "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 900000},
    ]  # fmt: skip
    found, skipped = parse_summary(rows)
    assert skipped == 0
    assert [(p.address, p.start_ms) for p in found] == [(B, 0), (A, 0), (A, 7_200_000)]
    old_b, old_a, new_a = found
    assert new_a.end_ms == 9_000_000
    assert new_a.values == {"Count": 15.0, "kWh_Tot_Diff": 1.25}
    assert new_a.extra == {"Start_Date": "1970-01-01 02:00"}
    assert new_a.number("kWh_Tot_Diff") == 1.25
    assert new_a.number("Start_Date") is None
    assert new_a.start == utc(1970, 1, 1, 2)
    assert new_a.end == utc(1970, 1, 1, 2, 30)
    assert old_b.values == {"Spaced": 2.5, "Float_Meter": 1.5}
    assert old_b.extra == {"Protocol": "v3", "Weird": [1, {"x": None}], "Flag": True,
                           "Nothing": None, "Huge": "Infinity", "Blank": " "}  # fmt: skip
    assert old_a.values == {}
    assert isinstance(old_a, SummaryPeriod)


@pytest.mark.parametrize(
    "row",
    [
        "not a row",
        {"Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 1},
        {"Meter": True, "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 1},
        {"Meter": "meter_x", "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 1},
        {"Meter": 1.5, "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 1},
        {"Meter": "1234567890123", "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 1},
        {"Meter": "10389", "Start_Time_Stamp_UTC_ms": "soon", "End_Time_Stamp_UTC_ms": 1},
        {"Meter": "10389", "Start_Time_Stamp_UTC_ms": 0},
        {"Meter": [10389], "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 1},
    ],
)
def test_parse_skips_rows_without_meter_or_timestamps(row: Any) -> None:
    good = {"Meter": "10389", "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 1}
    found, skipped = parse_summary([row, good])
    assert skipped == 1
    assert [p.address for p in found] == [A]


@pytest.mark.parametrize("data", [{"rows": []}, "text", None, 5])
def test_parse_not_an_array(data: Any) -> None:
    with pytest.raises(EkmResponseError, match="not a JSON array"):
        parse_summary(data)


# --- Windows -------------------------------------------------------------------------------


def test_zones() -> None:
    assert zone_info("UTC") is UTC
    assert zone_info("utc") is UTC
    assert zone_info("America~New_York") == NY
    assert zone_info(" America/New_York ") == NY
    assert zone_param("America/New_York") == "America~New_York"
    assert zone_param("utc") == "UTC"
    for bad in ("Mars/Olympus_Mons", "", "../etc/passwd"):
        with pytest.raises(ValueError, match="Unknown timezone"):
            zone_info(bad)


def test_split_meters_evenly() -> None:
    assert split_meters([]) == []
    addresses = [str(n).zfill(12) for n in range(250)]
    groups = split_meters(addresses)
    assert [len(g) for g in groups] == [84, 84, 82]
    assert list(itertools.chain(*groups)) == addresses
    assert [len(g) for g in split_meters(addresses[:100])] == [MAX_METERS_PER_REQUEST]


def test_plan_windows_rejects_naive_and_empty() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_windows(Report.HOUR, datetime(2026, 1, 1), utc(2026, 1, 2), UTC, 10)
    assert plan_windows(Report.HOUR, utc(2026, 1, 2), utc(2026, 1, 1), UTC, 10) == []
    assert plan_windows(Report.HOUR, utc(2026, 1, 2), utc(2026, 1, 2), UTC, 10) == []


def test_plan_windows_range_is_one_window() -> None:
    [window] = plan_windows(Report.RANGE, utc(2020, 1, 1), utc(2026, 1, 1), NY, 1)
    assert (window.start, window.end) == (utc(2020, 1, 1), utc(2026, 1, 1))
    assert (window.start_date, window.end_date) == ("201912311900", "202512311900")


@pytest.mark.parametrize(
    ("report", "start", "end", "count", "expected"),
    [
        (Report.QUARTER_HOUR, datetime(2026, 1, 1, 0, 7, tzinfo=NY),
         datetime(2026, 1, 1, 3, tzinfo=NY), 4,
         [("202601010007", "202601010100"), ("202601010100", "202601010200"),
          ("202601010200", "202601010300")]),
        (Report.DAY, datetime(2026, 3, 1, tzinfo=NY), datetime(2026, 3, 31, tzinfo=NY), 10,
         [("202603010000", "202603110000"), ("202603110000", "202603210000"),
          ("202603210000", "202603310000")]),
        (Report.WEEK, datetime(2026, 1, 1, tzinfo=NY), datetime(2026, 6, 1, tzinfo=NY), 10,
         [("202601010000", "202603080000"), ("202603080000", "202605170000"),
          ("202605170000", "202606010000")]),
        (Report.MONTH, datetime(2025, 11, 15, tzinfo=NY), datetime(2027, 2, 1, tzinfo=NY), 12,
         [("202511150000", "202611010000"), ("202611010000", "202702010000")]),
    ],
)  # fmt: skip
def test_plan_windows_cut_on_local_period_boundaries(
    report: Report, start: datetime, end: datetime, count: int, expected: list[tuple[str, str]]
) -> None:
    windows = plan_windows(report, start, end, NY, count)
    assert [(w.start_date, w.end_date) for w in windows] == expected
    assert windows[0].start == start
    assert windows[-1].end == end
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start


@pytest.mark.parametrize("day", [date(2026, 3, 8), date(2026, 11, 1)])
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_plan_windows_dst_hours_none_lost(day: date, count: int) -> None:
    """Each window's wall times, as EKM reads them, hold the whole UTC window."""
    start = datetime(day.year, day.month, day.day, tzinfo=NY)
    end = start + timedelta(days=1)
    windows = plan_windows(Report.HOUR, start, end, NY, count)
    assert windows[0].start == start.astimezone(UTC)
    assert windows[-1].end == end.astimezone(UTC)
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start
        assert (before.end - before.start) == timedelta(hours=count)
    for window in windows:
        assert wall_instant(window.start_date, NY) <= window.start
        assert wall_instant(window.end_date, NY) >= window.end
        assert wall_instant(window.end_date, NY) - window.end <= timedelta(hours=1)
    hours = sum(int((w.end - w.start) / timedelta(hours=1)) for w in windows)
    assert hours == (23 if day.month == 3 else 25)


def test_wall_times() -> None:
    # Seconds: a start rounds down, an end up.
    when = utc(2026, 1, 1, 10, 0, 30)
    assert wall_start(when, UTC) == "202601011000"
    assert wall_end(when, UTC) == "202601011001"
    assert wall_end(utc(2026, 1, 1, 10), UTC) == "202601011000"
    # 06:00 UTC on 2026-11-01 is 01:00 EST, the repeated hour: EKM would read 01:00 EDT.
    repeated = utc(2026, 11, 1, 6)
    assert wall_start(repeated, NY) == "202611010100"
    assert wall_instant("202611010100", NY) == utc(2026, 11, 1, 5)
    assert wall_end(repeated, NY) == "202611010200"
    assert wall_end(utc(2026, 11, 1, 5, 30), NY) == "202611010130"  # first occurrence
    assert epoch_ms(utc(2026, 1, 1)) == 1_767_225_600_000


def test_period_after() -> None:
    when = datetime(2026, 11, 1, 1, 40, tzinfo=NY, fold=1)  # 01:40 EST
    assert period_after(Report.HOUR, when, 1, NY) == utc(2026, 11, 1, 7)
    assert period_after(Report.QUARTER_HOUR, when, 2, NY) == utc(2026, 11, 1, 7)
    assert period_after(Report.DAY, when, 1, NY) == datetime(2026, 11, 2, tzinfo=NY)
    assert period_after(Report.WEEK, when, 1, NY) == datetime(2026, 11, 8, tzinfo=NY)
    assert period_after(Report.MONTH, when, 2, NY) == datetime(2027, 1, 1, tzinfo=NY)
    kolkata = ZoneInfo("Asia/Kolkata")  # +05:30: local hours start at :30 UTC
    assert period_after(Report.HOUR, utc(2026, 1, 1, 0, 7), 1, kolkata) == utc(2026, 1, 1, 0, 30)


# --- Over HTTP: requests, paging, splitting ------------------------------------------------


async def test_hosts(session: aiohttp.ClientSession) -> None:
    client = EkmSummaryClient(session, KEY)
    assert (client._legacy, client._v2) == (SUMMARY_SERVER, SUMMARY_V2_SERVER)
    client = EkmSummaryClient(session, KEY, server="http://sim:1/")
    assert (client._legacy, client._v2) == ("http://sim:1", "http://sim:1")


async def test_summary_request_and_order(client: EkmSummaryClient, fake: FakeSummary) -> None:
    start = datetime(2026, 9, 21, 10, tzinfo=NY)
    found = await client.async_summary(
        ["10389", B, A], "hr", start, start + timedelta(hours=3),
        timezone="America/New_York", fields=["kWh_Tot*", "Count"],
    )  # fmt: skip

    assert [(p.start - start.astimezone(UTC), p.address) for p in found] == [
        (timedelta(hours=h), m) for h in range(3) for m in (B, A)
    ]
    assert found[0].values == {"Count": 60.0, "kWh_Tot_Diff": 1.0, "RMS_Watts_Tot_Average": 1000}
    assert found[0].extra == {"Protocol": "v4", "Start_Date": "2026-09-21 10:00"}
    [query] = fake.queries()
    assert query == {
        "meters": f"{A}~{B}", "report": "hr", "format": "json", "timezone": "America~New_York",
        "fields": "kWh_Tot*~Count", "start_date": "202609211000", "end_date": "202609211300",
        "limit": "1000", "offset": "0",
    }  # fmt: skip
    assert fake.keys == [KEY]
    assert client.requests == 1
    assert v2_available(client) is None


async def test_summary_clips_by_utc(client: EkmSummaryClient, fake: FakeSummary) -> None:
    """EKM returns whole periods overlapping the window; only starts inside it are kept."""
    found = await client.async_summary(
        [A], Report.HOUR, utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 13, 0, 1)
    )
    assert [p.start for p in found] == [
        utc(2026, 1, 1, 11),
        utc(2026, 1, 1, 12),
        utc(2026, 1, 1, 13),
    ]
    assert fake.queries()[0]["start_date"] == "202601011030"
    assert fake.queries()[0]["end_date"] == "202601011301"


async def test_summary_oldest_first_number_meters_string_stamps(
    client: EkmSummaryClient, fake: FakeSummary, caplog: pytest.LogCaptureFixture
) -> None:
    fake.oldest_first = True
    fake.meter_as_number = True
    fake.stamps_as_strings = True
    fake.extra = {"Mystery": {"nested": [1]}, "Mystery_Level": "7.5", "Odd.Name": 3}
    fake.bad_rows = [{"Meter": "x"}, "junk"]
    caplog.set_level(logging.DEBUG, "custom_components.ekm.pyekm.summary")

    found = await client.async_summary(
        [A, B], Report.QUARTER_HOUR, utc(2026, 1, 1), utc(2026, 1, 1, 1)
    )

    assert [(p.start_ms, p.address) for p in found] == sorted(
        (p.start_ms, p.address) for p in found
    )
    assert len(found) == 8
    assert found[0].extra["Mystery"] == {"nested": [1]}
    assert found[0].values["Mystery_Level"] == 7.5
    assert found[0].values["Odd.Name"] == 3
    assert any("Skipped 2 summary rows" in r.getMessage() for r in caplog.records)


async def test_summary_pages_while_a_page_is_full(
    client: EkmSummaryClient, fake: FakeSummary
) -> None:
    """100 meters: 10 quarter hours a request, but the window's end falls in the repeated
    hour of 2026-11-01 and is written an hour later, so it holds 1,400 rows: two pages."""
    fake.meters = {str(n).zfill(12): (0, 2**53) for n in range(1, 101)}
    start = datetime(2026, 11, 1, tzinfo=NY)
    found = await client.async_summary(
        list(fake.meters),
        "15",
        start,
        datetime(2026, 11, 1, 3, tzinfo=NY),
        timezone="America/New_York",
    )

    assert [(q["start_date"], q["end_date"], q["offset"]) for q in fake.queries()] == [
        ("202611010000", "202611010230", "0"), ("202611010000", "202611010230", "1000"),
        ("202611010130", "202611010300", "0"), ("202611010130", "202611010300", "1000"),
    ]  # fmt: skip
    assert fake.page_sizes == [1400, 1400, 1000, 1000]  # rows before limit and offset
    assert len(found) == 16 * 100  # 04:00-08:00 UTC
    assert len({(p.address, p.start_ms) for p in found}) == len(found)
    assert found[0].start == start
    assert found[-1].start == utc(2026, 11, 1, 7, 45)


async def test_summary_splits_many_meters_and_long_windows(
    client: EkmSummaryClient, fake: FakeSummary
) -> None:
    fake.meters = {str(n).zfill(12): (0, 2**53) for n in range(1, 251)}
    start = utc(2026, 1, 1)
    end = start + timedelta(days=1)
    chunks = [c async for c in client.iter_summary(list(fake.meters), Report.HOUR, start, end)]

    queries = fake.queries()
    # 3 meter groups of at most 84: 11 hours per request, so 3 windows x 3 groups.
    assert len(queries) == 9
    assert max(fake.page_sizes) <= MAX_ROWS_PER_REQUEST
    assert {len(q["meters"].split("~")) for q in queries} == {84, 82}
    assert [len(c) for c in chunks] == [11 * 250, 11 * 250, 2 * 250]
    flat = [p for chunk in chunks for p in chunk]
    assert [(p.start_ms, p.address) for p in flat] == sorted(
        {(p.start_ms, p.address) for p in flat}
    )
    assert len(flat) == 24 * 250
    assert flat == await client.async_summary(list(fake.meters), Report.HOUR, start, end)


@pytest.mark.parametrize("day", [date(2026, 3, 8), date(2026, 11, 1)])
async def test_summary_dst_days_hourly(
    client: EkmSummaryClient, fake: FakeSummary, day: date
) -> None:
    """Hourly in New York across both DST changes: no hour lost, none repeated."""
    fake.meters = {str(n).zfill(12): (0, 2**53) for n in range(1, 101)}  # 10 hours per request
    start = datetime(day.year, day.month, day.day, tzinfo=NY)
    found = await client.async_summary(
        list(fake.meters),
        Report.HOUR,
        start,
        start + timedelta(days=1),
        timezone="America/New_York",
    )
    hours = sorted({p.start_ms for p in found})
    assert len(hours) == (23 if day.month == 3 else 25)
    assert hours[0] == ms(start)
    assert {b - a for a, b in itertools.pairwise(hours)} == {HOUR_MS}
    assert len(found) == len(hours) * 100
    locals_ = [p.extra["Start_Date"] for p in found if p.address == "000000000001"]
    if day.month == 11:
        assert locals_.count("2026-11-01 01:00") == 2
    else:
        assert "2026-03-08 02:00" not in locals_


async def test_summary_days_across_dst(client: EkmSummaryClient, fake: FakeSummary) -> None:
    start = datetime(2026, 10, 25, tzinfo=NY)
    found = await client.async_summary(
        [A], Report.DAY, start, start + timedelta(days=14), timezone="America~New_York"
    )
    assert [p.start for p in found] == [start + timedelta(days=d) for d in range(14)]
    assert found[7].end_ms - found[7].start_ms == 25 * HOUR_MS


async def test_summary_first_report_partial_and_no_data(
    client: EkmSummaryClient, fake: FakeSummary
) -> None:
    first = ms(utc(2026, 1, 1, 10, 20))
    fake.meters = {A: (first, first + 5 * HOUR_MS)}
    found = await client.async_summary([A, B], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))
    assert found[0].start_ms == first  # the period holding the first report starts at it
    assert [p.address for p in found] == [A] * 6
    # A window with no rows at all: EKM's 1001 status means nothing there.
    assert await client.async_summary([A], Report.HOUR, utc(2025, 1, 1), utc(2025, 1, 2)) == []


async def test_summary_range_keeps_its_row(client: EkmSummaryClient, fake: FakeSummary) -> None:
    found = await client.async_summary(
        [A, B], Report.RANGE, utc(2026, 1, 1, 0, 0, 30), utc(2026, 2, 1)
    )
    assert [(p.address, p.start_ms) for p in found] == [
        (B, ms(utc(2026, 1, 1))),
        (A, ms(utc(2026, 1, 1))),
    ]
    assert len(fake.queries()) == 1


async def test_summary_dedupes_and_stops_when_offset_is_ignored(
    client: EkmSummaryClient, fake: FakeSummary
) -> None:
    fake.meters = {str(n).zfill(12): (0, 2**53) for n in range(1, 101)}
    fake.ignore_offset = True
    start = utc(2026, 1, 1, 0, 7)
    found = await client.async_summary(
        list(fake.meters), "15", start, start + timedelta(hours=2, minutes=30)
    )
    assert [q["offset"] for q in fake.queries()] == ["0", "1000", "0"]  # 1,000 rows, then 100
    assert len(found) == len({(p.address, p.start_ms) for p in found}) == 10 * 100


async def test_summary_duplicate_rows_keep_the_longest(
    client: EkmSummaryClient, fake: FakeSummary
) -> None:
    """The same period twice (an in-progress period that grew between pages): the longer."""
    row = {"Meter": A, "Start_Time_Stamp_UTC_ms": 0, "End_Time_Stamp_UTC_ms": 60_000, "Count": 1}
    longer = {**row, "End_Time_Stamp_UTC_ms": 120_000, "Count": 2}
    fake.canned = [Canned(body=json.dumps([row, longer, row]))]
    [period] = await client.async_summary([A], "15", utc(1970, 1, 1), utc(1970, 1, 1, 0, 15))
    assert period.number("Count") == 2
    assert period.end_ms == 120_000


async def test_summary_nothing_to_ask(client: EkmSummaryClient, fake: FakeSummary) -> None:
    assert await client.async_summary([], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2)) == []
    assert await client.async_summary([A], Report.HOUR, utc(2026, 1, 2), utc(2026, 1, 1)) == []
    assert fake.log == []


async def test_summary_bad_arguments(client: EkmSummaryClient, fake: FakeSummary) -> None:
    with pytest.raises(ValueError, match="'mo15' is not a valid Report"):
        client.iter_summary([A], "mo15", utc(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="Unknown timezone"):
        await client.async_summary([A], "hr", utc(2026, 1, 1), utc(2026, 1, 2), timezone="Nowhere")
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.async_summary([A], "hr", datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="1 to 12 digits"):
        await client.async_summary(["x"], "hr", utc(2026, 1, 1), utc(2026, 1, 2))
    assert fake.log == []


# --- Over HTTP: errors ---------------------------------------------------------------------


async def test_error_text_body(
    client: EkmSummaryClient, fake: FakeSummary, fake_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """EKM's answer to bad arguments: HTTP 200, plain text starting with "Error"."""
    url = f"{fake_url}/summary?key={KEY}&meters=10389&report=xx"
    fake.canned = [
        Canned(
            body=f"Error: report must be 15, hr, dy, wk or mo ({url}) key {KEY}\n"
            "Usage: /summary?key=...&meters=...",
            content_type="text/plain",
        )
    ]
    with pytest.raises(EkmRequestError) as err:
        await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))
    assert isinstance(err.value, EkmResponseError)
    assert str(err.value).startswith(
        "EKM rejected the request's arguments: Error: report must be 15, hr, dy, wk or mo"
    )
    assert "Usage" not in str(err.value)
    assert_no_secret(err.value, fake_url)
    assert not any(KEY in r.getMessage() for r in caplog.records)


async def test_error_text_body_is_tidied(client: EkmSummaryClient, fake: FakeSummary) -> None:
    fake.canned = [
        Canned(body="  error\tin " + "x" * 300, content_type="text/plain"),
        Canned(body="Error", content_type="text/plain"),
    ]
    with pytest.raises(EkmRequestError) as err:
        await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))
    detail = str(err.value).removeprefix("EKM rejected the request's arguments: ")
    assert detail.startswith("error in xxx")
    assert len(detail) == 200
    assert detail.endswith("…")
    with pytest.raises(EkmRequestError, match=r"arguments: Error$"):
        await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))


@pytest.mark.parametrize(
    "canned",
    [
        Canned(body="<html>busy</html>", content_type="text/html"),
        Canned(body='[{"Meter": "10389"', content_type="application/json"),
        Canned(body=""),
        Canned(body='{"rows": []}'),
        Canned(body='{"error": "Something went wrong"}'),
    ],
)
async def test_other_bad_bodies(
    client: EkmSummaryClient, fake: FakeSummary, canned: Canned
) -> None:
    fake.canned = [canned]
    with pytest.raises(EkmResponseError) as err:
        await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))
    assert not isinstance(err.value, EkmRequestError)
    assert_no_secret(err.value)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1004])
async def test_no_data_statuses_are_empty(
    client: EkmSummaryClient, fake: FakeSummary, code: int
) -> None:
    fake.canned = [Canned(body=json.dumps({"status_code": code, "message": "no data"}))]
    assert await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2)) == []


@pytest.mark.parametrize(("code", "status"), [(1100, 400), (1200, 400), (1300, 500)])
async def test_error_statuses(
    client: EkmSummaryClient, fake: FakeSummary, code: int, status: int
) -> None:
    message = f"Found invalid meter: 12345 for key: {KEY}"
    fake.canned = [
        Canned(status=status, body=json.dumps({"status_code": code, "message": message}))
    ]
    with pytest.raises(EkmApiError) as err:
        await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))
    assert err.value.code == code
    assert_no_secret(err.value)


async def test_rate_limited(client: EkmSummaryClient, fake: FakeSummary) -> None:
    fake.canned = [Canned(status=429, body='{"error": "Too Many Requests"}',
                          headers={"Retry-After": "42"})]  # fmt: skip
    with pytest.raises(EkmRateLimitError) as err:
        await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))
    assert err.value.retry_after == 42
    assert_no_secret(err.value)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(client: EkmSummaryClient, fake: FakeSummary, status: int) -> None:
    fake.canned = [Canned(status=status, body="<h1>down</h1>", content_type="text/html")]
    with pytest.raises(EkmServerError) as err:
        await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))
    assert err.value.status == status
    assert_no_secret(err.value)


async def test_legacy_404_is_an_error(client: EkmSummaryClient, fake: FakeSummary) -> None:
    fake.canned = [Canned(status=404, body='{"error": "Not Found"}')]
    with pytest.raises(EkmServerError) as err:
        await client.async_summary([A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 2))
    assert err.value.status == 404
    assert v2_available(client) is None


# --- Over HTTP: Summary V2 -----------------------------------------------------------------


async def test_v2_summary(client: EkmSummaryClient, fake: FakeSummary) -> None:
    fake.meter_as_number = True
    found = await client.async_summary(
        [A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 1, 2), v2=True
    )
    assert [p.address for p in found] == [A, A]
    [query] = fake.queries("/summary/api/v2/meter")
    assert query["devices"] == A
    assert "meters" not in query
    assert fake.queries() == []
    assert v2_available(client) is True


async def test_v2_missing_falls_back_to_legacy(
    client: EkmSummaryClient, fake: FakeSummary, caplog: pytest.LogCaptureFixture
) -> None:
    fake.v2 = False
    caplog.set_level(logging.DEBUG, "custom_components.ekm.pyekm.summary")
    for _ in range(2):
        found = await client.async_summary(
            [A], Report.HOUR, utc(2026, 1, 1), utc(2026, 1, 1, 2), v2=True
        )
        assert len(found) == 2
    assert len(fake.queries("/summary/api/v2/meter")) == 1  # not asked again
    assert len(fake.queries()) == 2
    assert v2_available(client) is False
    notes = [r for r in caplog.records if "no Summary V2" in r.getMessage()]
    assert len(notes) == 1
    assert notes[0].levelno == logging.DEBUG


async def test_first_last(client: EkmSummaryClient, fake: FakeSummary) -> None:
    fake.first_last = [
        {"Meter": 10389, "First_Report_UTC_ms": 1000, "Last_Report_UTC_ms": "2000",
         "First_Date": "1970-01-01 00:00", "Last_Date": "1970-01-01 00:00"},
        {"Meter": "10388", "First_Report_UTC_ms": None},
        {"Meter": "bad"}, "junk",
    ]  # fmt: skip
    first_last = await client.async_first_last(["10389", A, B])
    assert first_last is not None
    assert set(first_last) == {A, B}
    assert (first_last[A].first_ms, first_last[A].last_ms) == (1000, 2000)
    assert first_last[A].raw["First_Date"] == "1970-01-01 00:00"
    assert (first_last[B].first_ms, first_last[B].last_ms) == (None, None)
    [query] = fake.queries("/summary/api/v2/firstlast")
    assert query == {"devices": f"{A}~{B}", "format": "json"}
    assert v2_available(client) is True
    assert await client.async_first_last([]) == {}


async def test_first_last_no_data_and_errors(client: EkmSummaryClient, fake: FakeSummary) -> None:
    fake.canned = [
        Canned(body=json.dumps({"status_code": 1000, "message": "no data"})),
        Canned(status=503, body="down", content_type="text/plain"),
        Canned(body=json.dumps({"Meter": A})),
        Canned(status=400, body=json.dumps({"status_code": 1200, "message": "invalid meter"})),
    ]
    assert await client.async_first_last([A]) == {}
    with pytest.raises(EkmServerError):
        await client.async_first_last([A])
    with pytest.raises(EkmResponseError, match="not a JSON array"):
        await client.async_first_last([A])
    with pytest.raises(EkmApiError) as err:
        await client.async_first_last([A])
    assert err.value.code == 1200


async def test_gateway_status(client: EkmSummaryClient, fake: FakeSummary) -> None:
    fake.gstat = [
        {"Gateway": "4016FA0500CD", "Status": "Online", "Last_Seen_UTC_ms": 1790000000000,
         "Meters": 2},
        {"Gateway": "40:16:fa:01:02:26", "Status": "OFFLINE", "Last_Seen_UTC_ms": "17"},
        {"MAC_Addr": "4016fa000003", "Status": "rebooting", "Online": 1},
        {"mac": "4016fa000004", "Connected": "no"},
        {"Gateway": "4016fa000005", "Status": "maintenance", "Online": "perhaps"},
        {"Gateway": "4016fa000006", "Status": True},
        {"Gateway": "4016fa000007", "Online": 0.0},
        {"Gateway": "4016fa000008", "Online": 2},
        {"Gateway": ""}, {"Status": "online"}, "junk",
    ]  # fmt: skip
    status = await client.async_gateway_status(["4016FA0500CD", "40-16-FA-01-02-26"])
    assert status is not None
    online = {mac: s.online for mac, s in status.items()}
    assert online == {
        "4016fa0500cd": True, "4016fa010226": False, "4016fa000003": True,
        "4016fa000004": False, "4016fa000005": None, "4016fa000006": True,
        "4016fa000007": False, "4016fa000008": None,
    }  # fmt: skip
    assert status["4016fa0500cd"].last_seen_ms == 1_790_000_000_000
    assert status["4016fa0500cd"].raw["Meters"] == 2
    assert status["4016fa010226"].last_seen_ms == 17
    assert status["4016fa000004"].last_seen_ms is None
    [query] = fake.queries("/summary/api/v2/gstat")
    assert query == {"gateways": "4016fa0500cd~4016fa010226", "format": "json"}


async def test_v2_extras_missing(
    client: EkmSummaryClient, fake: FakeSummary, caplog: pytest.LogCaptureFixture
) -> None:
    """A server without V2 (404): None, logged once at debug, never asked again."""
    fake.v2 = False
    caplog.set_level(logging.DEBUG, "custom_components.ekm.pyekm.summary")
    assert v2_available(client) is None
    for _ in range(2):
        assert await client.async_first_last([A]) is None
        assert await client.async_gateway_status(["4016fa0500cd"]) is None
    assert await client.async_first_last([]) is None
    assert await client.async_gateway_status([]) is None
    assert len(fake.log) == 2
    assert v2_available(client) is False
    notes = [r.getMessage() for r in caplog.records if "no Summary V2" in r.getMessage()]
    assert len(notes) == 2
    assert all(KEY not in note for note in notes)


async def test_v2_partly_there(client: EkmSummaryClient, fake: FakeSummary) -> None:
    """V2 answers but one inferred path is wrong: that call is off, V2 stays available."""
    fake.canned = [Canned(status=404, body='{"error": "Not Found"}')]
    assert await client.async_gateway_status(["4016fa0500cd"]) is None
    assert v2_available(client) is False
    assert await client.async_first_last([A]) == {}
    assert v2_available(client) is True
    assert await client.async_gateway_status(["4016fa0500cd"]) is None


# --- Through the simulator -----------------------------------------------------------------

SIM_NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)  # history since early 2023 (sim default)


@pytest.fixture
def world() -> Fleet:
    return Fleet.demo(clock=SimClock(SIM_NOW.timestamp(), manual=True))


@pytest.fixture
async def sim(world: Fleet) -> AsyncIterator[CloudSimulator]:
    async with CloudSimulator(world) as simulator:
        yield simulator


@pytest.fixture
def sim_client(sim: CloudSimulator, session: aiohttp.ClientSession) -> EkmSummaryClient:
    assert sim.url is not None
    return EkmSummaryClient(session, KEY, server=sim.url, timeout=10)


@pytest.mark.parametrize("day", [date(2026, 3, 8), date(2026, 11, 1)])
async def test_sim_dst_days(sim_client: EkmSummaryClient, sim: CloudSimulator, day: date) -> None:
    """Both DST changes in New York: 23 or 25 hours, consecutive, and the hours' (and
    quarter hours') energy adds up to the day's exactly (EKM's Diffs telescope)."""
    start = datetime(day.year, day.month, day.day, tzinfo=NY)
    end = start + timedelta(days=1)
    tz = "America/New_York"
    hours = await sim_client.async_summary([DEMO_METER, "10388"], "hr", start, end, timezone=tz)
    quarters = await sim_client.async_summary([DEMO_METER], "15", start, end, timezone=tz)
    [whole] = await sim_client.async_summary([DEMO_METER], "dy", start, end, timezone=tz)

    n = 23 if day.month == 3 else 25
    mine = [p for p in hours if p.address == DEMO_METER]
    assert len(mine) == n
    assert len(quarters) == 4 * n
    assert [p.start_ms for p in mine] == [ms(start) + h * HOUR_MS for h in range(n)]
    assert [p.address for p in hours[:2]] == [B, A]
    assert all(p.end_ms - p.start_ms == HOUR_MS for p in mine)
    assert whole.end_ms - whole.start_ms == n * HOUR_MS
    for parts in (mine, quarters):
        diff = sum(p.values["kWh_Tot_Diff"] for p in parts)
        assert diff == pytest.approx(whole.values["kWh_Tot_Diff"], abs=1e-6)
        assert parts[0].values["kWh_Tot_First"] == whole.values["kWh_Tot_First"]
        assert parts[-1].values["kWh_Tot_Last"] == whole.values["kWh_Tot_Last"]
        for before, after in itertools.pairwise(parts):
            assert before.end_ms == after.start_ms
            assert before.values["kWh_Tot_Last"] == after.values["kWh_Tot_First"]
    assert {q["timezone"] for _, q in sim.request_log} == {"America~New_York"}
    if day.month == 11:
        assert [p.extra["Start_Date"] for p in mine].count("2026-11-01 01:00") == 2


async def test_sim_pages_and_splits_many_meters(session: aiohttp.ClientSession) -> None:
    fleet = Fleet.generate(250, clock=SimClock(SIM_NOW.timestamp(), manual=True), seed=3)
    async with CloudSimulator(fleet) as sim:
        assert sim.url is not None
        client = EkmSummaryClient(session, KEY, server=sim.url)
        meters = sorted(fleet.meters)
        # Quarter hours over the fall-back night: 84 meters x 11 periods a request, and
        # the window whose end is in the repeated hour is written an hour later (paged).
        start = datetime(2026, 11, 1, tzinfo=NY)
        end = datetime(2026, 11, 1, 6, tzinfo=NY)
        chunks = [
            chunk
            async for chunk in client.iter_summary(
                meters, Report.QUARTER_HOUR, start, end, timezone="America/New_York",
                fields=["kWh_Tot_Diff"],
            )
        ]  # fmt: skip

    flat = [p for chunk in chunks for p in chunk]
    quarters = int((end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(minutes=15))
    assert quarters == 28  # 7 hours: 01:00 comes twice
    assert len(flat) == quarters * 250
    assert [(p.start_ms, p.address) for p in flat] == sorted(
        {(p.start_ms, p.address) for p in flat}
    )
    for chunk in chunks:
        assert chunk == sorted(chunk, key=lambda p: (p.start_ms, p.address))
    assert set(flat[0].values) == {"Count", "kWh_Tot_Diff"}
    queries = [q for name, q in sim.request_log if name == "summary"]
    assert {len(q["meters"].split("~")) for q in queries} == {84, 82}
    assert {q["limit"] for q in queries} == {"1000"}
    assert any(q["offset"] == "1000" for q in queries)  # paged while a page was full
    assert client.requests == len(queries)


async def test_sim_range_and_no_data(
    sim_client: EkmSummaryClient, sim: CloudSimulator, world: Fleet
) -> None:
    start, end = utc(2026, 10, 1), utc(2026, 11, 1)
    [b, a] = await sim_client.async_summary([A, B], Report.RANGE, start, end)
    assert (a.address, b.address) == (A, B)
    assert (a.start, a.end) == (start, end)
    days = await sim_client.async_summary([A], "dy", start, end)
    assert a.values["kWh_Tot_Diff"] == pytest.approx(sum(p.values["kWh_Tot_Diff"] for p in days))

    # Before the first report (1002) and after the last (1003): nothing there.
    assert await sim_client.async_summary([A], "dy", utc(2020, 1, 1), utc(2020, 2, 1)) == []
    world.meters[A].responsive = False
    world.clock.advance(7 * 86400)
    later = world.clock.now()
    assert (
        await sim_client.async_summary(
            [A], "hr", datetime.fromtimestamp(later - 3600, UTC), datetime.fromtimestamp(later, UTC)
        )
        == []
    )


async def test_sim_current_period_and_first_report(
    sim_client: EkmSummaryClient, world: Fleet
) -> None:
    now = SIM_NOW + timedelta(minutes=20)
    world.clock.set(now.timestamp())
    [current] = await sim_client.async_summary([A], "hr", utc(2026, 11, 20, 12), now)
    assert current.start == utc(2026, 11, 20, 12)
    assert current.end <= now  # the period in progress ends at the newest read
    first = await sim_client.async_first_last([A])
    assert first is not None
    first_ms = first[A].first_ms
    assert first_ms is not None
    assert first[A].last_ms == ms(current.end)
    assert first_ms == int(world.meters[A].first_report or 0) * MS
    begin = datetime.fromtimestamp(first_ms / MS, UTC)
    [partial, *_] = await sim_client.async_summary(
        [A], "dy", begin - timedelta(days=3), begin + timedelta(days=2)
    )
    assert partial.start_ms == first_ms  # the period holding the first report starts at it


async def test_sim_v2_same_periods(sim_client: EkmSummaryClient, sim: CloudSimulator) -> None:
    start = utc(2026, 11, 19)
    legacy = await sim_client.async_summary([A, B], "hr", start, start + timedelta(hours=5))
    v2 = await sim_client.async_summary([A, B], "hr", start, start + timedelta(hours=5), v2=True)
    assert v2 == legacy  # numbers or numeric strings, Meter a string or a number: the same
    assert v2_available(sim_client) is True
    assert sim.requests["summary_v2"] == 1


async def test_sim_without_v2(
    sim_client: EkmSummaryClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults.summary_v2 = False
    caplog.set_level(logging.DEBUG, "custom_components.ekm.pyekm.summary")
    assert await sim_client.async_first_last([A]) is None
    assert await sim_client.async_gateway_status(["4016fa0500cd"]) is None
    found = await sim_client.async_summary(
        [A], "hr", utc(2026, 11, 19), utc(2026, 11, 19, 2), v2=True
    )
    assert len(found) == 2
    assert v2_available(sim_client) is False
    assert await sim_client.async_first_last([A]) is None
    assert sim.requests == {"firstlast": 1, "gstat": 1, "summary_v2": 1, "summary": 1}
    assert len([r for r in caplog.records if "no Summary V2" in r.getMessage()]) == 3


async def test_sim_gateway_status(sim_client: EkmSummaryClient, world: Fleet) -> None:
    world.set_gateway_online("4016fa010226", False)
    world.clock.advance(3600)
    status = await sim_client.async_gateway_status(["4016FA0500CD", "40:16:fa:01:02:26"])
    assert status is not None
    assert status["4016fa0500cd"].online is True
    assert status["4016fa010226"].online is False
    assert status["4016fa010226"].last_seen_ms == ms(SIM_NOW)
    assert status["4016fa0500cd"].raw["Meters"] == 2


async def test_sim_error_text(
    sim_client: EkmSummaryClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The simulator's answer to bad arguments (pyekm never sends them: asked directly)."""
    assert sim.url is not None
    with pytest.raises(EkmRequestError) as err:
        await sim_client._http.get_json(sim.url + "/summary", {"meters": A, "report": "yr"})
    assert str(err.value) == (
        "EKM rejected the request's arguments: "
        "Error: report 'yr' is not one of 15, hr, dy, wk, mo, range"
    )
    assert_no_secret(err.value, sim.url)


async def test_sim_meter_not_on_the_key(
    sim_client: EkmSummaryClient, sim: CloudSimulator, session: aiohttp.ClientSession
) -> None:
    """EKM's 1200 message names the key; the exception must not."""
    with pytest.raises(EkmApiError) as err:
        await sim_client.async_summary([A, "12345"], "hr", utc(2026, 11, 19), utc(2026, 11, 19, 2))
    assert err.value.code == 1200
    assert_no_secret(err.value)
    assert sim.url is not None
    gateway = EkmSummaryClient(session, DEMO_GATEWAY_KEY, server=sim.url)
    with pytest.raises(EkmApiError):
        await gateway.async_summary([SOLAR_METER], "hr", utc(2026, 11, 19), utc(2026, 11, 19, 2))
    assert len(await gateway.async_summary([A], "hr", utc(2026, 11, 19), utc(2026, 11, 19, 2))) == 2


async def test_sim_http_errors(
    sim_client: EkmSummaryClient, sim: CloudSimulator, world: Fleet
) -> None:
    args = ([A], "hr", utc(2026, 11, 19), utc(2026, 11, 19, 2))
    sim.faults.only_endpoints = ["summary"]
    sim.faults.fail_next = [429]
    sim.faults.retry_after = "30"
    with pytest.raises(EkmRateLimitError) as limited:
        await sim_client.async_summary(*args)
    assert limited.value.retry_after == 30
    sim.faults.fail_next = [503]
    with pytest.raises(EkmServerError) as down:
        await sim_client.async_summary(*args)
    assert down.value.status == 503
    for kind in ("not_json", "truncated", "empty", "error_body", "wrong_shape"):
        sim.faults.malformed = kind
        with pytest.raises(EkmResponseError) as bad:
            await sim_client.async_summary(*args)
        assert not isinstance(bad.value, EkmRequestError)
    sim.faults.malformed = None
    world.revoke(KEY)
    with pytest.raises(EkmForbiddenError) as refused:
        await sim_client.async_summary(*args)
    for err in (limited.value, down.value, bad.value, refused.value):
        assert_no_secret(err)
    world.restore(KEY)
    assert len(await sim_client.async_summary(*args)) == 2


async def test_sim_register_replaced(sim_client: EkmSummaryClient, world: Fleet) -> None:
    """A meter replaced mid-period: that period's Diff is negative, as EKM gives it."""
    world.replace_registers(A, at=(SIM_NOW - timedelta(minutes=30)).timestamp())
    found = await sim_client.async_summary([A], "hr", SIM_NOW - timedelta(hours=2), SIM_NOW)
    assert [p.values["kWh_Tot_Diff"] < 0 for p in found] == [False, True]
