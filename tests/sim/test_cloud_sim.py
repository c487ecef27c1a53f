"""The simulated EKM cloud at the HTTP level: query handling, wire format, admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ekmsim.cloud import CloudSimulator, Faults
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    DEMO_METER_KEY,
    DEMO_NAMES,
    Fleet,
    SimClock,
)

START = 1_790_000_000.0
KEY = DEMO_ACCOUNT_KEY
DEMO_GATEWAY = {"mac_address": DEMO_GATEWAY_MAC, "name": "Demo Push3",
                "meters": [{"address": DEMO_METER}, {"address": "000000010388"}]}  # fmt: skip


@pytest.fixture
async def sim() -> AsyncIterator[CloudSimulator]:
    fleet = Fleet.demo(clock=SimClock(START, manual=True))
    fleet.backfill(20)
    async with CloudSimulator(fleet) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(
    http: aiohttp.ClientSession, sim: CloudSimulator, path: str, **params: str
) -> tuple[int, Any]:
    async with http.get(f"{sim.url}{path}", params=params) as response:
        text = await response.text()
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, text


async def post(
    http: aiohttp.ClientSession, sim: CloudSimulator, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.post(f"{sim.url}{path}", json=body) as response:
        return response.status, await response.json()


async def test_read_meter_wire_format(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    status, body = await get(http, sim, "/readMeter", key=KEY, meters="10389~000000010388",
                             fmt="json", cnt="3")  # fmt: skip
    assert status == 200
    sets = body["readMeter"]["ReadSet"]
    assert [s["Meter"] for s in sets] == [DEMO_METER, "000000010388"]
    demo = sets[0]
    assert demo["Protocol"] == "v4"
    assert demo["MAC_Addr"] == DEMO_GATEWAY_MAC
    assert demo["Interval"] == 60
    assert (demo["Good_Reads"], demo["Bad_Reads"], demo["Tz_Offset_Sec"]) == (3, 0, 0)
    reads = demo["ReadData"]
    stamps = [r["Time_Stamp_UTC_ms"] for r in reads]
    assert stamps == sorted(stamps)  # oldest first
    read = reads[-1]
    assert read["Good"] == 1
    assert isinstance(read["Time_Stamp_UTC_ms"], int)
    stored = sim.fleet.latest(DEMO_METER)
    assert stored is not None
    assert read["kWh_Tot"] == f"{stored['kWh_Tot']:.2f}"
    assert read["RMS_Volts_Ln_1"].count(".") == 1
    assert read["Line_Freq"].startswith(("59.9", "60.0"))
    assert read["RMS_Watts_Tot"].isdigit()
    assert read["Model"] == "1024"
    assert read["Cos_Theta_Ln_1"] == "0.95 L"
    assert read["Good_Reads_Ratio"] == 100
    assert read["PERR.NR"] == "0"
    v3 = sets[1]["ReadData"][-1]
    assert len(v3["kWh_Tot"].split(".")[1]) == 1
    assert "State_Out" not in v3


async def test_read_meter_aliases_and_filters(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    status, body = await get(http, sim, "/readmeter", key=KEY, format="JSON", count="2000",
                             tz="America~Los_Angeles", ver="v3", status="good")  # fmt: skip
    assert status == 200
    [only_v3] = body["readMeter"]["ReadSet"]
    assert only_v3["Meter"] == "000000010388"
    assert len(only_v3["ReadData"]) == 20
    assert only_v3["Tz_Offset_Sec"] == -7 * 3600
    assert only_v3["ReadData"][-1]["Time"] == "07:13:00"

    history = list(sim.fleet.history(DEMO_METER))
    since = history[-6]["Time_Stamp_UTC_ms"]
    until = history[-2]["Time_Stamp_UTC_ms"]
    _, body = await get(http, sim, "/readMeter", key=KEY, meters=DEMO_METER, cnt="1000",
                        since=str(since), until=str(until), fields="kWh_Tot~Nope~Good")  # fmt: skip
    reads = body["readMeter"]["ReadSet"][0]["ReadData"]
    assert [r["Time_Stamp_UTC_ms"] for r in reads] == [
        h["Time_Stamp_UTC_ms"] for h in history[-5:-1]
    ]
    assert set(reads[0]) == {"Good", "Date", "Time", "Time_Stamp_UTC_ms", "kWh_Tot"}

    _, body = await get(http, sim, "/readMeter", key=DEMO_GATEWAY_KEY)
    assert [s["Meter"] for s in body["readMeter"]["ReadSet"]] == ["000000010388", DEMO_METER]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"fmt": "csv"}, 1101),
        ({"cnt": "abc"}, 1102),
        ({"cnt": "0"}, 1102),
        ({"since": "yesterday"}, 1102),
        ({"timezone": "Mars~Olympus"}, 1102),
        ({"timezone": "../etc"}, 1102),
        ({"ver": "v9"}, 1102),
        ({"meters": "12a"}, 1102),
        ({"meters": "1234567890123"}, 1102),
        ({"meters": "~~"}, 1102),
        ({"bogus": "1"}, 1103),
        ({"meters": "424242"}, 1200),
    ],
)
async def test_read_meter_bad_queries(
    http: aiohttp.ClientSession, sim: CloudSimulator, params: dict[str, str], code: int
) -> None:
    status, body = await get(http, sim, "/readMeter", key=KEY, **params)
    assert status == 400
    assert body["status_code"] == code
    assert body["message"]


async def test_read_meter_no_data(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    fleet = Fleet.demo(clock=SimClock(START, manual=True))
    fleet.meters[DEMO_METER].responsive = False
    fleet.clock.advance(60)  # its read before it went silent is data, later ones are not
    sim.fleet = fleet
    status, body = await get(http, sim, "/readMeter", key=KEY, meters="10389")
    assert status == 200
    assert body == {"status_code": 1000, "message": f"There is not data for: {DEMO_METER}"}


async def test_keys(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    assert await get(http, sim, "/readMeter") == (401, {"error": "Unauthorized - key required"})
    assert await get(http, sim, "/account/api/account", key="x") == (
        403,
        {"error": "Unauthorized - invalid key"},
    )
    status, _ = await get(http, sim, "/readMeter", key=DEMO_GATEWAY_KEY, meters="15635")
    assert status == 400  # not on this gateway


async def test_account_api(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    status, body = await get(http, sim, "/account/api/account", key=KEY)
    assert status == 200
    assert body["key"] == KEY
    assert body["gateways"][0] == {"mac_address": DEMO_GATEWAY_MAC}
    assert body["meters"][0] == {"address": "000000000099"}
    assert body["metersets"] == []

    async with http.get(
        f"{sim.url}/account/api/account", params={"key": KEY, "deep": "1", "indent": "2"}
    ) as response:
        text = await response.text()
    assert "\n  " in text
    _, body = await get(http, sim, "/account/api/account", key=DEMO_GATEWAY_KEY, deep="true")
    assert body["key_type"] == "gateway"
    assert body["gateways"] == [
        {
            "mac_address": DEMO_GATEWAY_MAC,
            "name": "Demo Push3",
            "meters": [{"address": DEMO_METER}, {"address": "000000010388"}],
        }
    ]


async def test_account_api_by_key_type(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    """Each kind of key sees its own part of the account, key_type says which part."""
    garage = {"mac_address": "4016fa010226", "name": "Garage Push3",
              "meters": [{"address": "000000015635"}, {"address": "000000000099"}]}  # fmt: skip
    for key, kind, gateways, meters in (
        (KEY, "account", [DEMO_GATEWAY, garage], sorted(sim.fleet.meters)),
        (DEMO_GATEWAY_KEY, "gateway", [DEMO_GATEWAY], ["000000010388", DEMO_METER]),
        (DEMO_METER_KEY, "meter", [], [DEMO_METER]),
    ):
        for deep in ("true", "false"):
            status, body = await get(http, sim, "/account/api/account", key=key, deep=deep)
            assert status == 200
            assert body["key"] == key
            assert body["key_type"] == kind
            assert body["host"] == "psrv1.ekmmetering.com"
            assert body["meters"] == [{"address": a} for a in meters]
            expected = gateways if deep == "true" else [{"mac_address": g["mac_address"]}
                                                        for g in gateways]  # fmt: skip
            assert body["gateways"] == expected
    # A meter key sees no gateway at all.
    _, body = await get(http, sim, "/account/api/gateway", key=DEMO_METER_KEY)
    assert body == {"gateways": []}
    status, body = await get(http, sim, "/account/api/gateway", key=DEMO_METER_KEY,
                             id=DEMO_GATEWAY_MAC)  # fmt: skip
    assert (status, body["status_code"]) == (400, 1102)
    sim.fleet.revoke(DEMO_METER_KEY)
    assert (await get(http, sim, "/account/api/account", key=DEMO_METER_KEY))[0] == 403


async def test_realtime_with_a_meter_key(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    status, body = await get(http, sim, "/readMeter", key=DEMO_METER_KEY, meters="10389")
    assert status == 200
    [read_set] = body["readMeter"]["ReadSet"]
    assert read_set["Meter"] == DEMO_METER
    assert read_set["MAC_Addr"] == DEMO_GATEWAY_MAC  # the read still says where it came from
    _, body = await get(http, sim, "/readMeter", key=DEMO_METER_KEY)  # no meters: its own
    assert [s["Meter"] for s in body["readMeter"]["ReadSet"]] == [DEMO_METER]
    # Its neighbour on the same gateway is refused as for a gateway key's foreign meter.
    for meters in ("10388", "10389~10388", "99"):
        status, body = await get(http, sim, "/readMeter", key=DEMO_METER_KEY, meters=meters)
        assert (status, body["status_code"]) == (400, 1200), meters
        assert body["message"].startswith("Found invalid meter: 0000000")
    sim.fleet.revoke(DEMO_METER_KEY)
    assert (await get(http, sim, "/readMeter", key=DEMO_METER_KEY, meters="10389"))[0] == 403


async def test_gateway_api(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    _, body = await get(http, sim, "/account/api/gateway", key=KEY, id="4016FA0500CD~4016fa010226")
    assert [gw["mac_address"] for gw in body["gateways"]] == [DEMO_GATEWAY_MAC, "4016fa010226"]
    _, body = await get(http, sim, "/account/api/gateway", key=KEY)
    assert len(body["gateways"]) == 2
    status, body = await get(http, sim, "/account/api/gateway", key=DEMO_GATEWAY_KEY,
                             id="4016fa010226")  # fmt: skip
    assert (status, body["status_code"]) == (400, 1102)
    status, _ = await get(http, sim, "/account/api/gateway", key="wrong")
    assert status == 403


async def test_faults_from_python(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    sim.faults.fail_next = [502, 429]
    sim.faults.retry_after = "7"
    assert (await get(http, sim, "/readMeter", key=KEY))[0] == 502
    async with http.get(f"{sim.url}/readMeter", params={"key": KEY}) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
    assert (await get(http, sim, "/readMeter", key=KEY))[0] == 200

    sim.faults.malformed = "truncated"
    sim.faults.only_endpoints = ["account"]
    status, text = await get(http, sim, "/account/api/account", key=KEY)
    assert status == 200
    assert isinstance(text, str)
    assert text.startswith('{"key":')
    assert (await get(http, sim, "/readMeter", key=KEY))[0] == 200
    assert sim.requests == {"readMeter": 4, "account": 1}
    sim.reset_counts()
    assert sim.requests == {}
    assert not sim.request_log


async def test_admin_api(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    status, faults = await post(http, sim, "/_sim/faults", {"error_rates": {"503": 1},
                                                            "latency_s": 0})  # fmt: skip
    assert status == 200
    assert faults["error_rates"] == {"503": 1.0}
    assert sim.faults.error_rates == {503: 1.0}
    assert (await get(http, sim, "/readMeter", key=KEY))[0] == 503
    for bad in (
        {"nope": 1},
        {"error_rates": {"418": 1}},
        {"error_rates": {"500": 2}},
        {"fail_next": [200]},
        {"malformed": "weird"},
        {"force_status": 999},
        {"only_endpoints": ["history"]},
        ["not", "an", "object"],
    ):
        status, body = await post(http, sim, "/_sim/faults", bad)
        assert status == 400, bad
        assert "error" in body
    async with http.delete(f"{sim.url}/_sim/faults") as response:
        assert (await response.json())["error_rates"] == {}
    assert (await get(http, sim, "/_sim/faults"))[1] == Faults().to_json()

    _, counts = await get(http, sim, "/_sim/requests")
    assert counts == {"counts": {"readMeter": 1}, "total": 1}
    async with http.delete(f"{sim.url}/_sim/requests") as response:
        assert (await response.json())["total"] == 0

    assert await post(http, sim, "/_sim/keys/revoke", {"key": KEY}) == (200, {"revoked": True})
    assert (await get(http, sim, "/readMeter", key=KEY))[0] == 403
    assert await post(http, sim, "/_sim/keys/restore", {"key": KEY}) == (200, {"revoked": False})
    assert (await post(http, sim, "/_sim/keys/revoke", {}))[0] == 400
    assert (await post(http, sim, "/_sim/keys/revoke"))[0] == 400

    change = {"responsive": False, "relays": [True, True], "solar": "x"}
    status, meter = await post(http, sim, "/_sim/meters/10389", change)
    assert status == 200
    assert meter["responsive"] is False
    assert meter["relays"] == [True, True]
    assert meter["solar"] is False
    assert sim.fleet.meters[DEMO_METER].responsive is False
    assert (await post(http, sim, "/_sim/meters/1", {}))[0] == 404
    _, meters = await get(http, sim, "/_sim/meters")
    assert len(meters) == len(sim.fleet.meters)

    before = sim.fleet.clock.now()
    assert await post(http, sim, "/_sim/advance", {"seconds": 120}) == (
        200,
        {"now": before + 120, "reads": 2 * (len(sim.fleet.meters) - 1)},
    )
    assert (await post(http, sim, "/_sim/advance", {"seconds": -1}))[0] == 400
    _, state = await post(http, sim, "/_sim/advance")
    assert state["now"] == before + 180

    _, state = await get(http, sim, "/_sim/state")
    assert state["now"] == before + 180
    assert state["interval_s"] == 60
    assert state["requests"] == {"readMeter": 1}
    assert {gw["mac"] for gw in state["gateways"]} == set(sim.fleet.gateways)
    assert KEY not in str(state)


async def test_rate_limit_window(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    sim.faults.update({"rate_limit": 1, "rate_window_s": 60, "seed": 1})
    assert (await get(http, sim, "/readMeter", key=KEY))[0] == 200
    async with http.get(f"{sim.url}/readMeter", params={"key": KEY}) as response:
        assert response.status == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Another key has its own window.
    assert (await get(http, sim, "/readMeter", key=DEMO_GATEWAY_KEY))[0] == 200


async def test_default_world_latency_and_stop(http: aiohttp.ClientSession) -> None:
    sim = CloudSimulator()
    sim.faults.latency_s = 0.01
    await sim.start()
    try:
        assert (await get(http, sim, "/account/api/account", key=KEY))[0] == 200
    finally:
        await sim.stop()
    await sim.stop()  # idempotent


async def test_account_lists_the_names_of_a_named_demo(http: aiohttp.ClientSession) -> None:
    """Fleet.demo(named=True), as python -m ekmsim runs it: the portal's meter names."""
    fleet = Fleet.demo(clock=SimClock(START, manual=True), named=True)
    async with CloudSimulator(fleet) as named:
        _, body = await get(http, named, "/account/api/account", key=KEY)
    assert {m["address"]: m.get("name") for m in body["meters"]} == DEMO_NAMES
