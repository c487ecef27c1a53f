"""EkmLanClient against the simulated Push3s over real sockets (ekmsim.lan)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import logging
import socket
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.ekm.pyekm import (
    DEFAULT_LAN_PORT,
    EkmAuthError,
    EkmCloudClient,
    EkmConnectionError,
    EkmError,
    EkmLanClient,
    EkmRateLimitError,
    EkmResponseError,
    EkmServerError,
    EkmTimeoutError,
    MeterReading,
    Source,
    lan_base_url,
)
from custom_components.ekm.pyekm.lan import lan_protocol, parse_lan_read_meter
from ekmsim.cloud import LAN_MALFORMED_KINDS, CloudSimulator
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_GARAGE_MAC,
    DEMO_GATEWAY_MAC,
    DEMO_LAN_KEY,
    DEMO_METER,
    DEMO_SUBPANEL_METER,
)
from tests.conftest import Push3Lan

# Per-read bookkeeping only the cloud sends, and what only a Push3 sends (§2.4, §9.1).
CLOUD_ONLY = {"Good", "Date", "Time", "Good_Reads_Ratio", "Read_Attempts", "PERR.NR", "PERR.RXP"}
LAN_ONLY = {"Meter_Address", "Reliability_Ratio", "Request_Type"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def client(session: aiohttp.ClientSession, lan: Push3Lan, **kwargs: Any) -> EkmLanClient:
    return EkmLanClient(session, lan.host, lan.key, **kwargs)


def dead_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- normalization -----------------------------------------------------------------------------


async def test_same_reading_as_the_cloud(
    session: aiohttp.ClientSession, cloud: CloudSimulator, push3_lan: Push3Lan
) -> None:
    """Every meter of both Push3s: the LAN reading equals the cloud's for the same read."""
    assert cloud.url is not None
    cloud_client = EkmCloudClient(session, DEMO_ACCOUNT_KEY, server=cloud.url)
    compared = 0
    for mac in (DEMO_GATEWAY_MAC, DEMO_GARAGE_MAC):
        gateway = push3_lan.sim.gateway(mac)
        lan = await EkmLanClient(session, gateway.host, gateway.key).async_read_latest()
        assert sorted(lan) == sorted(gateway.gateway.meters)
        read_sets = await cloud_client.async_read_meters(list(lan))
        for address, reading in lan.items():
            expected = read_sets[address].latest
            assert expected is not None
            assert reading.source is Source.LAN
            assert (reading.address, reading.timestamp_ms) == (address, expected.timestamp_ms)
            assert reading.protocol == expected.protocol
            cloud_values = {k: v for k, v in expected.values.items() if k not in CLOUD_ONLY}
            lan_values = {k: v for k, v in reading.values.items() if k not in LAN_ONLY}
            assert lan_values == cloud_values
            for name, value in lan_values.items():  # the same types, not only equal numbers
                assert type(value) is type(cloud_values[name]), name
            assert set(reading.values) - set(lan_values) <= LAN_ONLY
            compared += 1
    assert compared == 4


async def test_power_factor_numbers_and_protocols(
    session: aiohttp.ClientSession, push3_lan: Push3Lan
) -> None:
    latest = await client(session, push3_lan).async_read_latest()
    stored = push3_lan.fleet.latest(DEMO_METER)
    assert stored is not None
    water_heater = latest[DEMO_METER]
    assert water_heater.protocol == "v4"
    assert latest[DEMO_SUBPANEL_METER].protocol == "v3"
    assert isinstance(water_heater.values["kWh_Tot"], float)
    assert water_heater.values["kWh_Tot"] == stored["kWh_Tot"]
    assert water_heater.values["Power_Factor_Ln_1"] == stored["Power_Factor_Ln_1"] == 95
    assert water_heater.values["Cos_Theta_Ln_1"] == "0.95 L"
    assert water_heater.values["Power_Factor_Ln_3"] == 200  # idle line: "0.00 C"
    assert water_heater.values["Net_Calc_Watts_Tot"] == stored["RMS_Watts_Tot"]
    assert water_heater.values["Model"] == "1024"
    assert water_heater.timestamp_ms == stored["Time_Stamp_UTC_ms"]
    solar = await EkmLanClient(
        session,
        push3_lan.sim.gateway(DEMO_GARAGE_MAC).host,
        push3_lan.sim.gateway(DEMO_GARAGE_MAC).key,
    ).async_read_latest()
    assert {r.protocol for r in solar.values()} == {"v4"}  # a v5 meter speaks v4


async def test_count_oldest_first(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    push3_lan.fleet.advance(push3_lan.fleet.interval_s * 4)
    reads = await client(session, push3_lan).async_read(3)
    assert list(reads) == sorted([DEMO_METER, DEMO_SUBPANEL_METER])
    history = list(push3_lan.fleet.history(DEMO_METER))[-3:]
    assert [r.timestamp_ms for r in reads[DEMO_METER]] == [r["Time_Stamp_UTC_ms"] for r in history]
    assert [r.values["kWh_Tot"] for r in reads[DEMO_METER]] == [r["kWh_Tot"] for r in history]
    assert len(push3_lan.sim.requests) == 1


async def test_stale_meter_keeps_its_last_read(
    session: aiohttp.ClientSession, push3_lan: Push3Lan
) -> None:
    lan = client(session, push3_lan)
    before = await lan.async_read_latest()
    push3_lan.faults.lan_stale_meters = [DEMO_METER]
    push3_lan.fleet.advance(300)
    after = await lan.async_read_latest()
    assert after[DEMO_METER] == before[DEMO_METER]  # the same read, old timestamp and all
    stale_for = after[DEMO_SUBPANEL_METER].timestamp_ms - after[DEMO_METER].timestamp_ms
    assert stale_for == 300_000
    push3_lan.faults.lan_stale_meters = []
    fresh = await lan.async_read_latest()
    assert fresh[DEMO_METER].timestamp_ms == fresh[DEMO_SUBPANEL_METER].timestamp_ms


async def test_unresponsive_meter_keeps_its_last_read(
    session: aiohttp.ClientSession, push3_lan: Push3Lan
) -> None:
    lan = client(session, push3_lan)
    before = await lan.async_read_latest()
    push3_lan.fleet.meters[DEMO_METER].responsive = False
    push3_lan.fleet.advance(180)
    after = await lan.async_read_latest()
    assert after[DEMO_METER].timestamp_ms == before[DEMO_METER].timestamp_ms
    assert after[DEMO_SUBPANEL_METER].timestamp_ms == before[DEMO_METER].timestamp_ms + 180_000


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["wrong", "fault", "revoked"])
async def test_wrong_key(
    session: aiohttp.ClientSession,
    push3_lan: Push3Lan,
    guard_secrets: Callable[..., None],
    how: str,
) -> None:
    key = push3_lan.key
    if how == "wrong":
        key = "not-the-lan-key-0042"
        guard_secrets(key)
    elif how == "fault":
        push3_lan.faults.lan_wrong_key = True
    else:
        push3_lan.fleet.revoke(key)
    lan = EkmLanClient(session, push3_lan.host, key)
    with pytest.raises(EkmAuthError) as info:
        await lan.async_read()
    assert str(info.value) == "The Push3 rejected the LAN key"
    assert_no_secret(info.value, key)


async def test_dead_port(session: aiohttp.ClientSession) -> None:
    lan = EkmLanClient(session, f"127.0.0.1:{dead_port()}", DEMO_LAN_KEY, timeout=5)
    with pytest.raises(EkmConnectionError) as info:
        await lan.async_read_latest()
    assert not isinstance(info.value, EkmTimeoutError)
    assert str(info.value).startswith(f"Cannot reach the Push3 at {lan.host} (")
    assert_no_secret(info.value, DEMO_LAN_KEY)


async def test_unknown_host(session: aiohttp.ClientSession) -> None:
    lan = EkmLanClient(session, "push3.invalid", DEMO_LAN_KEY, timeout=5)
    with pytest.raises(EkmConnectionError) as info:
        await lan.async_read_latest()
    assert_no_secret(info.value, DEMO_LAN_KEY)


async def test_timeout(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    push3_lan.faults.lan_latency_s = 5
    with pytest.raises(EkmTimeoutError) as info:
        await client(session, push3_lan, timeout=0.2).async_read()
    assert str(info.value) == f"The Push3 at {push3_lan.host} did not answer in time"


async def test_dropped_connection(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    push3_lan.faults.lan_drop = True
    with pytest.raises(EkmConnectionError) as info:
        await client(session, push3_lan).async_read()
    assert_no_secret(info.value, push3_lan.key)
    push3_lan.faults.lan_drop = False
    assert await client(session, push3_lan).async_read()


async def test_rate_limited(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    push3_lan.faults.lan_fail_next = [429]
    push3_lan.faults.retry_after = "12"
    with pytest.raises(EkmRateLimitError) as info:
        await client(session, push3_lan).async_read()
    assert info.value.retry_after == 12


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors(
    session: aiohttp.ClientSession, push3_lan: Push3Lan, status: int
) -> None:
    """A 500 that is not an HTML page is a gateway fault, not a wrong key."""
    push3_lan.faults.lan_fail_next = [status]
    with pytest.raises(EkmServerError) as info:
        await client(session, push3_lan).async_read()
    assert info.value.status == status
    assert await client(session, push3_lan).async_read()  # the next answer is fine


@pytest.mark.parametrize("kind", [k for k in LAN_MALFORMED_KINDS if k != "bad_reads"])
async def test_malformed_body(
    session: aiohttp.ClientSession, push3_lan: Push3Lan, kind: str
) -> None:
    push3_lan.faults.lan_malformed = kind
    with pytest.raises(EkmResponseError) as info:
        await client(session, push3_lan).async_read()
    assert_no_secret(info.value, push3_lan.key)


async def test_malformed_reads_are_skipped(
    session: aiohttp.ClientSession, push3_lan: Push3Lan
) -> None:
    good = await client(session, push3_lan).async_read(2)
    push3_lan.faults.lan_malformed = "bad_reads"
    assert await client(session, push3_lan).async_read(2) == good


def test_parse_edges() -> None:
    stamp = 1_790_000_000_000
    assert parse_lan_read_meter({}) == {}
    reads = parse_lan_read_meter(
        {
            "000000000002": [
                {"Model": "1017", "Time_Stamp_UTC_ms": stamp + 1000, "kWh_Tot": 2.0},
                {"Model": "1017", "Time_Stamp_UTC_ms": stamp, "kWh_Tot": 1.0},
                {"Model": "1017", "Time_Stamp_UTC_ms": stamp, "kWh_Tot": 1.0},  # duplicate
                {"Good": 0, "Time_Stamp_UTC_ms": stamp + 2000, "kWh_Tot": 3.0},  # failed read
                {"Time_Stamp_UTC_ms": stamp + 3000, "Meter_Address": "2"},  # no value
                {"Time_Stamp_UTC_ms": 0, "kWh_Tot": 4.0},
            ],
            "000000000003": ["junk"],
        }
    )
    assert list(reads) == ["000000000002"]
    assert [r.values["kWh_Tot"] for r in reads["000000000002"]] == [1.0, 2.0]
    assert reads["000000000002"][0].protocol == "v3"
    for body in ([], "x", {"2": []}, {"0000000000021": []}, {"000000000002": {}}):
        with pytest.raises(EkmResponseError):
            parse_lan_read_meter(body)
    assert lan_protocol({"Model": "1024"}) == "v4"
    assert lan_protocol({"Model": "9999", "State_Out": 1}) == "v4"
    assert lan_protocol({"Model": "9999", "Meter_Status_Code": "00"}) == "v3"
    assert lan_protocol({}) is None


# --- host and key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("192.168.1.50", "http://192.168.1.50"),
        ("192.168.1.50:8080", "http://192.168.1.50:8080"),
        (" Push3.Local ", "http://push3.local"),
        ("push3.local.", "http://push3.local"),
        ("http://h:8081", "http://h:8081"),
        ("HTTP://192.168.1.50:80/", "http://192.168.1.50"),
        ("[fe80::1]:80", "http://[fe80::1]"),
        ("[FE80:0::1]:8080", "http://[fe80::1]:8080"),
        ("fe80::1", "http://[fe80::1]"),
    ],
)
def test_lan_base_url(text: str, url: str) -> None:
    assert lan_base_url(text) == url
    assert lan_base_url(url) == url


@pytest.mark.parametrize(
    "text",
    ["", "  ", "https://h", "ftp://h", "h/readMeter", "h?key=abc", "h#x", "h:0", "h:65536",
     "h:http", "h:", "user@h", "999.1.1.1", "a b", "-h", "[zz::1]", "fe80::1%eth0", "http://"],
)  # fmt: skip
def test_lan_base_url_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="Push3"):
        lan_base_url(text)


async def test_client_host_repr_and_bad_arguments(session: aiohttp.ClientSession) -> None:
    lan = EkmLanClient(session, "http://192.168.1.50:80", DEMO_LAN_KEY)
    assert lan.host == "192.168.1.50"
    assert DEMO_LAN_KEY not in repr(lan)
    assert repr(lan) == "EkmLanClient(host='192.168.1.50')"
    assert DEFAULT_LAN_PORT == 80
    with pytest.raises(ValueError, match="LAN key"):
        EkmLanClient(session, "192.168.1.50", " ")
    with pytest.raises(ValueError, match="path"):
        EkmLanClient(session, "192.168.1.50/x", DEMO_LAN_KEY)


async def test_key_never_logged(
    session: aiohttp.ClientSession,
    push3_lan: Push3Lan,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every outcome at DEBUG: no record, message or exception holds the key."""
    caplog.set_level(logging.DEBUG)
    errors: list[EkmError] = []
    lan = client(session, push3_lan)
    changes: list[dict[str, Any]] = [
        {},
        {"lan_malformed": "bad_reads"},
        {"lan_malformed": "not_json"},
        {"lan_fail_next": [503]},
        {"lan_wrong_key": True},
        {"lan_drop": True},
    ]
    for change in changes:
        push3_lan.faults.reset()
        push3_lan.faults.update(change)
        try:
            await lan.async_read(2)
        except EkmError as err:
            errors.append(err)
    assert len(errors) == 4
    assert caplog.records
    for record in caplog.records:
        assert push3_lan.key not in record.getMessage()
    for err in errors:
        assert_no_secret(err, push3_lan.key)


def assert_no_secret(err: BaseException, key: str) -> None:
    assert key not in str(err)
    assert key not in repr(err)
    # No aiohttp error (which holds the URL) chained or shown in a traceback.
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


# --- properties ----------------------------------------------------------------------------------

_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(
    lambda label: not label.isdigit()
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    host=st.one_of(
        st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    ),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    scheme=st.booleans(),
)
def test_lan_base_url_property(host: str, port: int | None, scheme: bool) -> None:
    """Any valid host: a normalized URL, idempotent, its host part what the client shows."""
    text = f"{'http://' if scheme else ''}{host.upper()}{'' if port is None else f':{port}'}"
    url = lan_base_url(text)
    assert url.startswith("http://")
    assert lan_base_url(url) == url
    assert url.endswith(f":{port}") == (port is not None and port != 80)
    assert "?" not in url
    assert url.lower() == url


_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        _SCALAR,
        st.lists(_SCALAR, max_size=3),
        st.dictionaries(
            st.one_of(st.from_regex(r"\d{12}", fullmatch=True), st.text(max_size=13)),
            st.one_of(
                _SCALAR,
                st.lists(
                    st.one_of(
                        _SCALAR,
                        st.dictionaries(
                            st.sampled_from(
                                [
                                    "Time_Stamp_UTC_ms",
                                    "kWh_Tot",
                                    "Model",
                                    "Good",
                                    "Cos_Theta_Ln_1",
                                    "RMS_Watts_Tot",
                                    "State_Watts_Dir",
                                ]
                            ),
                            _SCALAR,
                        ),
                    ),
                    max_size=4,
                ),
            ),
            max_size=3,
        ),
    )
)
def test_parse_never_crashes(body: Any) -> None:
    """Any JSON-ish body: readings (timestamped, oldest first) or EkmResponseError."""
    try:
        parsed = parse_lan_read_meter(body)
    except EkmResponseError:
        return
    for address, readings in parsed.items():
        assert len(address) == 12
        assert address.isdigit()
        assert readings
        stamps = [r.timestamp_ms for r in readings]
        assert stamps == sorted(set(stamps))
        assert all(isinstance(r, MeterReading) and r.timestamp_ms > 0 for r in readings)
