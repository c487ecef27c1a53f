"""pyekm's EKM cloud client against the simulated cloud over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
import itertools
import logging
import socket
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from custom_components.ekm.pyekm import (
    EkmApiError,
    EkmAuthError,
    EkmCloudClient,
    EkmConnectionError,
    EkmError,
    EkmForbiddenError,
    EkmRateLimitError,
    EkmResponseError,
    EkmServerError,
    EkmTimeoutError,
    Source,
    parse_read_meter,
)
from custom_components.ekm.pyekm.cloud import MAX_METERS_PER_REQUEST, ReadSet
from custom_components.ekm.pyekm.errors import STATUS_MEANINGS
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    Fleet,
    SimClock,
)

START = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC: daylight at the solar meter (UTC-5)
KEYS = (DEMO_ACCOUNT_KEY, DEMO_GATEWAY_KEY)
V3_METER = "000000010388"
SOLAR_METER = "000000000099"
LOOSE_METER = "000300000001"


@pytest.fixture
def world() -> Fleet:
    fleet = Fleet.demo(clock=SimClock(START, manual=True), interval_s=60)
    fleet.backfill(10)
    return fleet


@pytest.fixture
async def sim(world: Fleet) -> AsyncIterator[CloudSimulator]:
    async with CloudSimulator(world) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def client(sim: CloudSimulator, session: aiohttp.ClientSession) -> EkmCloudClient:
    assert sim.url is not None
    return EkmCloudClient(session, DEMO_ACCOUNT_KEY, server=sim.url + "/", timeout=5)


def assert_no_secret(err: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the exception nor any log record mentions a key."""
    texts = [str(err), repr(err), *(r.getMessage() for r in caplog.records)]
    for text in texts:
        for key in KEYS:
            assert key not in text


# --- Account API ---------------------------------------------------------------------------


async def test_account_deep(client: EkmCloudClient, sim: CloudSimulator) -> None:
    account = await client.async_get_account()

    assert client.server == sim.url
    assert account.key_type == "account"
    assert account.host == "psrv1.ekmmetering.com"
    assert "key" not in account.raw
    gateways = {gw.mac: gw for gw in account.gateways}
    assert set(gateways) == {DEMO_GATEWAY_MAC, "4016fa010226"}
    assert gateways[DEMO_GATEWAY_MAC].name == "Demo Push3"
    assert gateways[DEMO_GATEWAY_MAC].meters == (DEMO_METER, V3_METER)
    assert account.addresses == sorted(sim.fleet.meters)
    by_address = {d.address: d for d in account.devices}
    assert by_address[DEMO_METER].gateway_mac == DEMO_GATEWAY_MAC
    assert by_address[SOLAR_METER].gateway_mac == "4016fa010226"
    assert by_address[LOOSE_METER].gateway_mac is None
    assert str(by_address[DEMO_METER].kind) == "meter"
    assert sim.requests == {"account": 1}
    assert client.requests == 1
    assert sim.request_log[0] == ("account", {"deep": "true"})


async def test_account_without_deep_meter_lists(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    """Gateways listed without meters are asked for one by one."""
    sim.faults.deep_meter_lists = False

    account = await client.async_get_account()

    assert sim.requests == {"account": 1, "gateway": 2}
    assert {log[1]["id"] for log in sim.request_log if log[0] == "gateway"} == {
        DEMO_GATEWAY_MAC,
        "4016fa010226",
    }
    by_address = {d.address: d for d in account.devices}
    assert by_address[V3_METER].gateway_mac == DEMO_GATEWAY_MAC
    assert by_address[LOOSE_METER].gateway_mac is None


@pytest.mark.parametrize("fault", ["error", "wrong_shape"])
async def test_account_gateway_detail_failure_is_tolerated(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    sim.faults.deep_meter_lists = False
    sim.faults.only_endpoints = ["gateway"]
    if fault == "error":
        sim.faults.error_rates = {503: 1.0}
    else:
        sim.faults.malformed = "wrong_shape"
    caplog.set_level(logging.DEBUG)

    account = await client.async_get_account()

    assert {gw.meters for gw in account.gateways} == {()}
    assert all(d.gateway_mac is None for d in account.devices)
    assert len(account.devices) == len(sim.fleet.meters)
    assert any("No meter list" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert DEMO_ACCOUNT_KEY not in record.getMessage()


async def test_account_gateway_detail_auth_error_raises(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults.deep_meter_lists = False
    sim.faults.only_endpoints = ["gateway"]
    sim.faults.error_rates = {403: 1.0}

    with pytest.raises(EkmForbiddenError) as err:
        await client.async_get_account()
    assert_no_secret(err.value, caplog)


async def test_account_with_gateway_key(
    sim: CloudSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.url is not None
    client = EkmCloudClient(session, DEMO_GATEWAY_KEY, server=sim.url)

    account = await client.async_get_account()

    assert account.key_type == "gateway"
    assert [gw.mac for gw in account.gateways] == [DEMO_GATEWAY_MAC]
    assert account.addresses == [V3_METER, DEMO_METER]


async def test_account_iostacks_and_odd_entries(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    """ioStacks are devices too; unusable entries are skipped."""
    sim.faults.account_extra = {
        "iostacks": [
            {"address": "5000123", "name": "Garage ioStack", "gateway": "4016FA0500CD"},
            {"address": "not-an-address"},
            "000000010389",
        ],
        "gateways": [
            {"mac_address": "4016FA0500CD", "name": "", "meters": [{"address": 10389}, "x"]},
            {"mac": "4016fa000002", "meters": ["10388"]},
            {"name": "no mac"},
            "not a mapping",
        ],
        "meters": [{"address": "10389", "name": "Main"}, {"address": ""}, 15635],
        "host": "",
        "key_type": None,
    }

    account = await client.async_get_account()

    assert account.key_type == "account"
    assert account.host is None
    assert [gw.mac for gw in account.gateways] == [DEMO_GATEWAY_MAC, "4016fa000002"]
    assert account.gateways[0].name is None
    assert account.gateways[0].meters == (DEMO_METER,)
    devices = {d.address: d for d in account.devices}
    assert set(devices) == {DEMO_METER, "000000015635", "000005000123", V3_METER}
    assert devices[DEMO_METER].name == "Main"
    assert devices[DEMO_METER].gateway_mac == DEMO_GATEWAY_MAC
    assert str(devices["000005000123"].kind) == "iostack"
    assert devices["000005000123"].gateway_mac == DEMO_GATEWAY_MAC
    assert devices["000005000123"].name == "Garage ioStack"
    assert devices["000000015635"].gateway_mac is None
    assert devices[V3_METER].gateway_mac == "4016fa000002"  # only known from its gateway


async def test_account_not_an_object(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults.malformed = "wrong_shape"
    with pytest.raises(EkmResponseError) as err:
        await client.async_get_account()
    assert_no_secret(err.value, caplog)


async def test_account_body_with_status_code(client: EkmCloudClient, sim: CloudSimulator) -> None:
    sim.faults.account_extra = {"status_code": "1300"}
    with pytest.raises(EkmApiError) as err:
        await client.async_get_account()
    assert err.value.code == 1300


# --- Realtime API --------------------------------------------------------------------------


async def test_realtime_demo_meters_in_one_request(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    read_sets = await client.async_read_meters(
        ["10389", DEMO_METER, V3_METER, "15635", "99", LOOSE_METER]
    )

    assert sim.requests == {"readMeter": 1}
    query = sim.request_log[0][1]
    assert query["meters"].split("~") == [DEMO_METER, V3_METER, "000000015635", SOLAR_METER,
                                          LOOSE_METER]  # fmt: skip
    assert query["fmt"] == "json"
    assert query["cnt"] == "1"
    assert set(read_sets) == set(sim.fleet.meters)

    demo = read_sets[DEMO_METER]
    assert isinstance(demo, ReadSet)
    assert demo.protocol == "v4"
    assert demo.gateway_mac == DEMO_GATEWAY_MAC
    assert demo.interval_s == 60
    assert demo.bad_reads == 0
    assert len(demo.readings) == 1
    reading = demo.latest
    assert reading is not None
    assert reading.source is Source.CLOUD
    assert reading.protocol == "v4"
    assert reading.address == DEMO_METER
    stored = sim.fleet.latest(DEMO_METER)
    assert stored is not None
    assert reading.timestamp_ms == stored["Time_Stamp_UTC_ms"]
    assert reading.timestamp == datetime.fromtimestamp(int(stored["Time_Stamp_UTC_ms"]) / 1000, UTC)
    values = reading.values
    assert values["kWh_Tot"] == stored["kWh_Tot"]
    assert isinstance(values["kWh_Tot"], float)
    assert values["RMS_Volts_Ln_1"] == stored["RMS_Volts_Ln_1"]
    assert values["RMS_Watts_Tot"] == stored["RMS_Watts_Tot"]
    assert isinstance(values["RMS_Watts_Tot"], int)
    assert values["Power_Factor_Ln_1"] == stored["Power_Factor_Ln_1"]
    assert values["Cos_Theta_Ln_1"] == stored["Cos_Theta_Ln_1"]
    assert values["Model"] == "1024"
    assert values["Good"] == 1
    assert values["Net_Calc_Watts_Tot"] == stored["RMS_Watts_Tot"]  # all lines forward
    assert values["Calc_Fwd_kWh_Tot"] == pytest.approx(
        float(stored["kWh_Tot"]) - float(stored["Rev_kWh_Tot"])
    )
    assert reading.number("kWh_Tot") == stored["kWh_Tot"]
    assert reading.number("Model") is None
    assert reading.text("Model") == "1024"
    assert reading.text("kWh_Tot") is None

    v3 = read_sets[V3_METER]
    assert v3.protocol == "v3"
    assert v3.latest is not None
    assert "State_Watts_Dir" not in v3.latest.values
    assert "Net_Calc_Watts_Tot" not in v3.latest.values

    solar = read_sets[SOLAR_METER].latest
    assert solar is not None
    net = solar.number("Net_Calc_Watts_Tot")
    assert net is not None
    assert net < 0  # exporting at midday
    assert solar.values["Calc_Net_kWh_Tot"] == pytest.approx(
        float(solar.values["kWh_Tot"]) - 2 * float(solar.values["Rev_kWh_Tot"])
    )
    assert read_sets["000000015635"].protocol == "v4"  # v5 meters speak the v4 protocol
    assert read_sets[LOOSE_METER].gateway_mac is None


async def test_realtime_chunks_many_meters(
    session: aiohttp.ClientSession,
) -> None:
    fleet = Fleet.generate(250, clock=SimClock(START, manual=True), seed=7)
    fleet.advance_to()
    async with CloudSimulator(fleet) as sim:
        assert sim.url is not None
        client = EkmCloudClient(session, DEMO_ACCOUNT_KEY, server=sim.url)
        addresses = sorted(fleet.meters)

        read_sets = await client.async_read_meters([a.lstrip("0") for a in addresses])

    assert set(read_sets) == set(addresses)
    assert sim.requests == {"readMeter": 3}  # ceil(250 / MAX_METERS_PER_REQUEST)
    sizes = sorted(len(query["meters"].split("~")) for _, query in sim.request_log)
    assert sizes == [50, MAX_METERS_PER_REQUEST, MAX_METERS_PER_REQUEST]
    assert all(rs.latest is not None for rs in read_sets.values())


async def test_realtime_no_meters_makes_no_request(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    assert await client.async_read_meters([]) == {}
    assert sim.requests == {}


async def test_realtime_count_and_since(client: EkmCloudClient, sim: CloudSimulator) -> None:
    read_sets = await client.async_read_meters([DEMO_METER], count=5)
    readings = read_sets[DEMO_METER].readings
    assert len(readings) == 5
    stamps = [r.timestamp_ms for r in readings]
    assert stamps == sorted(stamps)
    assert {b - a for a, b in itertools.pairwise(stamps)} == {60_000}
    totals = [r.number("kWh_Tot") or 0 for r in readings]
    assert totals == sorted(totals)  # registers never decrease

    since = stamps[-3]
    read_sets = await client.async_read_meters([DEMO_METER], count=1000, since_ms=since)
    assert [r.timestamp_ms for r in read_sets[DEMO_METER].readings] == stamps[-2:]

    await client.async_read_meters([DEMO_METER], count=5000)
    await client.async_read_meters([DEMO_METER], count=0)
    assert [query["cnt"] for _, query in sim.request_log] == ["5", "1000", "1000", "1"]
    assert sim.request_log[1][1]["since"] == str(since)


async def test_realtime_since_with_no_newer_data(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    """EKM's no-data statuses just mean an empty answer."""
    latest = sim.fleet.latest(DEMO_METER)
    assert latest is not None
    since = int(latest["Time_Stamp_UTC_ms"])
    assert await client.async_read_meters([DEMO_METER], since_ms=since) == {}


async def test_realtime_fields(client: EkmCloudClient, sim: CloudSimulator) -> None:
    read_sets = await client.async_read_meters(
        [DEMO_METER, SOLAR_METER], fields=["kWh_Tot", "Rev_kWh_Tot", "Pulse_Cnt_1"]
    )

    assert sim.request_log[0][1]["fields"] == "kWh_Tot~Rev_kWh_Tot~Pulse_Cnt_1"
    latest = read_sets[DEMO_METER].latest
    assert latest is not None
    assert set(latest.values) == {
        "Good", "Date", "Time", "Time_Stamp_UTC_ms", "kWh_Tot", "Rev_kWh_Tot", "Pulse_Cnt_1",
        "Calc_Fwd_kWh_Tot", "Calc_Net_kWh_Tot",
    }  # fmt: skip
    assert isinstance(latest.values["Pulse_Cnt_1"], int)


async def test_realtime_timezone(client: EkmCloudClient, sim: CloudSimulator) -> None:
    utc = (await client.async_read_meters([DEMO_METER]))[DEMO_METER].latest
    local = (await client.async_read_meters([DEMO_METER], timezone="America/New_York"))[
        DEMO_METER
    ].latest

    assert sim.request_log[1][1]["timezone"] == "America~New_York"
    assert utc is not None
    assert local is not None
    assert utc.timestamp_ms == local.timestamp_ms
    expected = utc.timestamp.astimezone(ZoneInfo("America/New_York"))
    assert local.values["Date"] == expected.strftime("%Y-%m-%d")
    assert local.values["Time"] == expected.strftime("%H:%M:%S")
    assert utc.values["Time"] != local.values["Time"]


async def test_realtime_numbers_or_numeric_strings(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    """Measurements may come as JSON strings (EKM) or numbers: same readings."""
    as_strings = await client.async_read_meters(list(sim.fleet.meters), count=3)
    sim.faults.numbers_as_json = True
    as_numbers = await client.async_read_meters(list(sim.fleet.meters), count=3)

    for address, read_set in as_strings.items():
        for a, b in zip(read_set.readings, as_numbers[address].readings, strict=True):
            assert a.values == b.values


async def test_realtime_bad_reads_are_skipped(client: EkmCloudClient, sim: CloudSimulator) -> None:
    sim.faults.bad_read_rate = 0.5

    read_sets = await client.async_read_meters(list(sim.fleet.meters), count=10)

    bad = sum(rs.bad_reads for rs in read_sets.values())
    good = sum(len(rs.readings) for rs in read_sets.values())
    assert bad > 0
    assert good > 0
    assert bad + good == 10 * len(sim.fleet.meters)
    for read_set in read_sets.values():
        for reading in read_set.readings:
            assert reading.values["Good"] == 1
            assert "kWh_Tot" in reading.values


async def test_realtime_dotted_and_unknown_fields(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    sim.faults.extra_fields = {
        "Mystery_Level": "12.5",
        "Mystery.Text": " hello ",
        "Mystery_Number": 7,
        "Mystery_List": [1, 2],
    }

    latest = (await client.async_read_meters([DEMO_METER]))[DEMO_METER].latest

    assert latest is not None
    assert latest.values["PERR.NR"] == "0"
    assert latest.values["PERR.RXP"] == "0"
    assert latest.values["Good_Reads_Ratio"] == 100
    assert latest.values["Mystery_Level"] == 12.5
    assert latest.values["Mystery.Text"] == "hello"
    assert latest.values["Mystery_Number"] == 7.0
    assert "Mystery_List" not in latest.values


async def test_realtime_stale_meter_keeps_old_reads(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    sim.fleet.meters[DEMO_METER].responsive = False
    before = sim.fleet.latest(DEMO_METER)
    sim.fleet.advance(600)

    read_sets = await client.async_read_meters([DEMO_METER, V3_METER])

    stale = read_sets[DEMO_METER].latest
    fresh = read_sets[V3_METER].latest
    assert before is not None
    assert stale is not None
    assert fresh is not None
    assert stale.timestamp_ms == before["Time_Stamp_UTC_ms"]
    assert fresh.timestamp_ms == stale.timestamp_ms + 600_000


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003])
async def test_realtime_no_data_statuses(
    client: EkmCloudClient, sim: CloudSimulator, code: int
) -> None:
    sim.faults.force_status = code
    assert await client.async_read_meters([DEMO_METER]) == {}


@pytest.mark.parametrize("code", [1004, 1100, 1101, 1102, 1103, 1200, 1300])
async def test_realtime_error_statuses(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    sim.faults.force_status = code
    with pytest.raises(EkmApiError) as err:
        await client.async_read_meters([DEMO_METER])
    assert err.value.code == code
    assert err.value.meaning == STATUS_MEANINGS[code]
    assert not err.value.is_no_data
    assert str(code) in str(err.value)
    assert_no_secret(err.value, caplog)


async def test_realtime_unknown_meter(
    client: EkmCloudClient, caplog: pytest.LogCaptureFixture
) -> None:
    """EKM's 1200 message names the key; the exception must not."""
    with pytest.raises(EkmApiError) as err:
        await client.async_read_meters([DEMO_METER, "12345"])
    assert err.value.code == 1200
    assert_no_secret(err.value, caplog)


# --- HTTP-level errors ---------------------------------------------------------------------


async def test_wrong_key_is_forbidden(
    sim: CloudSimulator, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    assert sim.url is not None
    wrong = "V3JvbmdLZXk6MTIzNDU"
    client = EkmCloudClient(session, wrong, server=sim.url)
    with pytest.raises(EkmForbiddenError) as err:
        await client.async_read_meters([DEMO_METER])
    assert wrong not in str(err.value)
    assert_no_secret(err.value, caplog)


async def test_revoked_key(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    await client.async_get_account()
    sim.fleet.revoke(DEMO_ACCOUNT_KEY)
    with pytest.raises(EkmAuthError) as err:
        await client.async_get_account()
    assert isinstance(err.value, EkmForbiddenError)
    assert_no_secret(err.value, caplog)
    sim.fleet.restore(DEMO_ACCOUNT_KEY)
    await client.async_get_account()


async def test_missing_key_is_unauthorized(
    sim: CloudSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.url is not None
    client = EkmCloudClient(session, "", server=sim.url)
    with pytest.raises(EkmAuthError) as err:
        await client.async_get_account()
    assert not isinstance(err.value, EkmForbiddenError)


@pytest.mark.parametrize("kind", ["auth_error_body"])
async def test_auth_error_in_body(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    sim.faults.malformed = kind
    with pytest.raises(EkmAuthError) as err:
        await client.async_read_meters([DEMO_METER])
    assert_no_secret(err.value, caplog)


async def test_rate_limited_retry_after_seconds(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults.fail_next = [429]
    sim.faults.retry_after = "30"
    with pytest.raises(EkmRateLimitError) as err:
        await client.async_read_meters([DEMO_METER])
    assert err.value.retry_after == 30
    assert "retry after 30 s" in str(err.value)
    assert_no_secret(err.value, caplog)
    assert await client.async_read_meters([DEMO_METER])  # fail_next is used up


async def test_rate_limited_retry_after_http_date(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    sim.faults.fail_next = [429, 429, 429]
    sim.faults.retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=120), True)
    with pytest.raises(EkmRateLimitError) as err:
        await client.async_read_meters([DEMO_METER])
    assert err.value.retry_after is not None
    assert 100 < err.value.retry_after <= 120

    # A date in the past means "now"; a zone-less date is taken as UTC.
    sim.faults.retry_after = "Mon, 01 Jan 2001 00:00:00 -0000"
    with pytest.raises(EkmRateLimitError) as err:
        await client.async_read_meters([DEMO_METER])
    assert err.value.retry_after == 0

    sim.faults.retry_after = "soon"
    with pytest.raises(EkmRateLimitError) as err:
        await client.async_read_meters([DEMO_METER])
    assert err.value.retry_after is None
    assert str(err.value) == "Rate limited by the EKM server"


async def test_rate_limited_without_header_and_by_limiter(
    client: EkmCloudClient, sim: CloudSimulator
) -> None:
    sim.faults.fail_next = [429]
    sim.faults.retry_after = None
    with pytest.raises(EkmRateLimitError) as err:
        await client.async_read_meters([DEMO_METER])
    assert err.value.retry_after is None

    sim.faults.rate_limit = 2
    await client.async_read_meters([DEMO_METER])
    await client.async_get_account()
    with pytest.raises(EkmRateLimitError) as err:
        await client.async_read_meters([DEMO_METER])
    assert err.value.retry_after is not None
    assert 1 <= err.value.retry_after <= 60


@pytest.mark.parametrize("status", [400, 404, 500, 502, 503, 504])
async def test_http_errors(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    sim.faults.error_rates = {status: 1.0}
    with pytest.raises(EkmServerError) as err:
        await client.async_read_meters([DEMO_METER])
    assert err.value.status == status
    assert f"HTTP {status}" in str(err.value)
    assert_no_secret(err.value, caplog)


@pytest.mark.parametrize(
    "kind", ["not_json", "truncated", "wrong_shape", "readset_not_list", "empty", "error_body"]
)
async def test_malformed_bodies(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    sim.faults.malformed = kind
    with pytest.raises(EkmResponseError) as err:
        await client.async_read_meters([DEMO_METER])
    assert_no_secret(err.value, caplog)


async def test_timeout(
    sim: CloudSimulator, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    assert sim.url is not None
    sim.faults.latency_s = 30  # released when the simulator stops
    client = EkmCloudClient(session, DEMO_ACCOUNT_KEY, server=sim.url, timeout=0.2)
    with pytest.raises(EkmTimeoutError) as err:
        await client.async_read_meters([DEMO_METER])
    assert isinstance(err.value, EkmConnectionError)
    assert_no_secret(err.value, caplog)


async def test_connection_refused(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = EkmCloudClient(session, DEMO_ACCOUNT_KEY, server=f"http://127.0.0.1:{port}")
    with pytest.raises(EkmConnectionError) as err:
        await client.async_get_account()
    assert not isinstance(err.value, EkmTimeoutError)
    assert "Cannot reach the EKM server" in str(err.value)
    assert_no_secret(err.value, caplog)


async def test_every_error_is_an_ekm_error_without_secrets(
    client: EkmCloudClient, sim: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """One sweep over every fault: typed EkmError, no key anywhere, logs included."""
    caplog.set_level(logging.DEBUG)
    faults: list[dict[str, Any]] = [
        {"fail_next": [status, status]} for status in (400, 401, 403, 404, 429, 500, 502, 503, 504)
    ]
    faults += [{"malformed": kind} for kind in ("not_json", "truncated", "auth_error_body")]
    faults += [{"force_status": code} for code in (1004, 1100, 1200, 1300)]
    for change in faults:
        sim.faults.reset()
        sim.faults.update(change)
        for call in (client.async_get_account, lambda: client.async_read_meters([DEMO_METER])):
            try:
                await call()
            except EkmError as err:
                assert_no_secret(err, caplog)
            else:
                assert "force_status" in change  # the Account API has no status faults


# --- parse_read_meter ---------------------------------------------------------------------


def test_parse_read_meter_tolerates_odd_entries() -> None:
    read = {"Good": "1", "Time_Stamp_UTC_ms": "1790000000000", "kWh_Tot": "12.5"}
    data = {
        "readMeter": {
            "ReadSet": [
                "not a mapping",
                {"Meter": "not a meter", "ReadData": [read]},
                {
                    "Meter": "10389",
                    "Protocol": "V4",
                    "Interval": "60",
                    "MAC_Addr": "4016FA0500CD",
                    "ReadData": [
                        {**read, "Time_Stamp_UTC_ms": 1790000060000, "kWh_Tot": 12.6},
                        "junk",
                        {"Good": 1},  # no timestamp: unusable
                        {"Good": 0, "Time_Stamp_UTC_ms": 1790000120000, "PERR.NR": "1"},
                    ],
                },
                {"Meter": 10389, "Protocol": "", "ReadData": [read, read]},
                {"Meter": "10388", "Interval": 0},
            ]
        }
    }

    result = parse_read_meter(data, Source.MQTT)

    assert set(result) == {DEMO_METER, V3_METER}
    merged = result[DEMO_METER]
    assert [r.values["kWh_Tot"] for r in merged.readings] == [12.5, 12.6]
    assert merged.readings[0].source is Source.MQTT
    assert merged.bad_reads == 2
    assert merged.protocol is None  # the last entry wins
    assert merged.gateway_mac is None
    empty = result[V3_METER]
    assert empty.readings == ()
    assert empty.latest is None
    assert empty.interval_s is None


@pytest.mark.parametrize(
    "data",
    [None, [], {"ReadSet": []}, {"readMeter": []}, {"readMeter": {"ReadSet": {"a": 1}}}],
)
def test_parse_read_meter_rejects_wrong_shapes(data: Any) -> None:
    with pytest.raises(EkmResponseError):
        parse_read_meter(data)


def test_parse_read_meter_without_read_sets() -> None:
    assert parse_read_meter({"readMeter": {}}) == {}
