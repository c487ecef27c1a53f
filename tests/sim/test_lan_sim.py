"""The simulated Push3 LAN API on the wire (plain aiohttp, not pyekm), its faults and ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import re
import socket
from typing import Any

import aiohttp
import pytest

from ekmsim import __main__ as sim_main
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_GARAGE_MAC,
    DEMO_GATEWAY_MAC,
    DEMO_LAN_KEY,
    DEMO_METER,
    DEMO_SUBPANEL_METER,
    Fleet,
    SimGateway,
    lan_key,
)
from ekmsim.lan import DEFAULT_LAN_PORT, LanSimulator, lan_read
from tests.conftest import Push3Lan

# The only strings of a Push3 read (ekm-cloud-api.md §9.1); every other value is a number.
STRING_FIELDS = re.compile(r"Model|Firmware|Meter_Address|Cos_Theta_Ln_\d|Meter_Time|"
                           r"Meter_Status_Code(_[ABC])?")  # fmt: skip
COS_THETA = re.compile(r"[01]\.\d\d( [LC])?")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def get(
    session: aiohttp.ClientSession, lan: Push3Lan, key: str | None = None, **params: str
) -> tuple[int, str, str]:
    query = {"key": lan.key if key is None else key, **params}
    async with session.get(f"{lan.url}/readMeter", params=query) as response:
        return response.status, response.content_type, await response.text()


async def body(session: aiohttp.ClientSession, lan: Push3Lan, **params: str) -> Any:
    async with session.get(f"{lan.url}/readMeter", params={"key": lan.key, **params}) as response:
        assert response.status == 200
        return await response.json()


def test_demo_keys() -> None:
    fleet = Fleet.demo()
    assert fleet.gateways[DEMO_GATEWAY_MAC].lan_key == DEMO_LAN_KEY == lan_key(DEMO_GATEWAY_MAC)
    assert fleet.gateways[DEMO_GARAGE_MAC].lan_key != DEMO_LAN_KEY
    assert Fleet.demo().gateways[DEMO_GARAGE_MAC].lan_key == fleet.gateways[DEMO_GARAGE_MAC].lan_key
    assert SimGateway(mac="4016fa000001", name="x", key="k", lan_key="mine").lan_key == "mine"
    assert all(gw.lan_key != gw.key for gw in fleet.gateways.values())


async def test_shape_and_types(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    data = await body(session, push3_lan, cnt="1")
    assert list(data) == [DEMO_SUBPANEL_METER, DEMO_METER]  # only this gateway's meters
    for address, reads in data.items():
        [read] = reads
        assert read["Meter_Address"] == address
        assert list(read)[:3] == ["Model", "Firmware", "Meter_Address"]
        assert isinstance(read["Time_Stamp_UTC_ms"], int)
        assert not {"Good", "Date", "Time"} & set(read)
        assert not any(name.startswith("Power_Factor") for name in read)
        for name, value in read.items():
            if STRING_FIELDS.fullmatch(name):
                assert isinstance(value, str), name
            else:
                assert isinstance(value, int | float), name
                assert not isinstance(value, bool), name
        for n in (1, 2, 3):
            assert COS_THETA.fullmatch(read[f"Cos_Theta_Ln_{n}"])
    v3, v4 = data[DEMO_SUBPANEL_METER][0], data[DEMO_METER][0]
    assert (v3["Model"], v4["Model"]) == ("1017", "1024")
    assert v3["Meter_Status_Code"] == "00"
    assert "Request_Type" not in v3
    assert v4["Request_Type"] == 0
    assert v4["Cos_Theta_Ln_1"] == "0.95 L"
    assert v4["Cos_Theta_Ln_3"] == "0.00 C"  # idle line
    stored = push3_lan.fleet.latest(DEMO_METER)
    assert stored is not None
    assert v4["kWh_Tot"] == stored["kWh_Tot"]
    assert v4["Time_Stamp_UTC_ms"] == stored["Time_Stamp_UTC_ms"]


async def test_count(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    push3_lan.fleet.advance(push3_lan.fleet.interval_s * 5)
    history = list(push3_lan.fleet.history(DEMO_METER))
    data = await body(session, push3_lan, cnt="4")
    assert [r["Time_Stamp_UTC_ms"] for r in data[DEMO_METER]] == [
        r["Time_Stamp_UTC_ms"] for r in history[-4:]
    ]
    for cnt in ("0", "junk"):
        assert len((await body(session, push3_lan, cnt=cnt))[DEMO_METER]) == 1
    assert len((await body(session, push3_lan))[DEMO_METER]) == 1  # no cnt: 1


async def test_registers_follow_time(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    first = (await body(session, push3_lan))[DEMO_METER][0]
    push3_lan.fleet.advance(3600)
    later = (await body(session, push3_lan))[DEMO_METER][0]
    assert later["Time_Stamp_UTC_ms"] == first["Time_Stamp_UTC_ms"] + 3_600_000
    assert later["kWh_Tot"] > first["kWh_Tot"]
    meter = push3_lan.fleet.meters[DEMO_METER]
    assert later["kWh_Tot"] == meter.registers(later["Time_Stamp_UTC_ms"] / 1000)["kWh_Tot"]


@pytest.mark.parametrize("how", ["wrong", "missing", "other_gateway", "fault", "revoked"])
async def test_wrong_key_is_500_html(
    session: aiohttp.ClientSession, push3_lan: Push3Lan, how: str
) -> None:
    key: str | None = None
    if how == "wrong":
        key = "nope"
    elif how == "missing":
        key = ""
    elif how == "other_gateway":
        key = push3_lan.sim.gateway(DEMO_GARAGE_MAC).key
    elif how == "fault":
        push3_lan.faults.lan_wrong_key = True
    else:
        push3_lan.fleet.revoke(push3_lan.key)
    status, content_type, text = await get(session, push3_lan, key)
    assert (status, content_type) == (500, "text/html")
    assert text.startswith("<!DOCTYPE html>")


async def test_error_faults(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    push3_lan.faults.lan_fail_next = [429, 500, 503]
    async with session.get(f"{push3_lan.url}/readMeter", params={"key": push3_lan.key}) as r:
        assert (r.status, r.headers["Retry-After"]) == (429, "30")
    for status in (500, 503):
        code, content_type, _ = await get(session, push3_lan)
        assert (code, content_type) == (status, "text/plain")  # not HTML: not a wrong key
    assert (await get(session, push3_lan))[0] == 200
    push3_lan.faults.lan_error_rates = {502: 1.0}
    assert (await get(session, push3_lan))[0] == 502


async def test_malformed(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    faults = push3_lan.faults
    good = await body(session, push3_lan)
    faults.lan_malformed = "bad_address"
    data = await body(session, push3_lan)
    assert "10389" in data
    faults.lan_malformed = "not_list"
    assert all(isinstance(v, dict) for v in (await body(session, push3_lan)).values())
    faults.lan_malformed = "bad_reads"
    spoiled = await body(session, push3_lan)
    assert [reads[-1] for reads in spoiled.values()] == [reads[-1] for reads in good.values()]
    faults.lan_malformed = "wrong_shape"
    assert isinstance(await body(session, push3_lan), list)
    faults.lan_malformed = "empty"
    assert (await get(session, push3_lan))[2] == ""
    faults.lan_malformed = "not_json"
    assert (await get(session, push3_lan))[1] == "text/html"


async def test_latency_and_drop(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    push3_lan.faults.lan_latency_s = 5
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await get(session, push3_lan)
    push3_lan.faults.lan_latency_s = 0
    push3_lan.faults.lan_drop = True
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get(session, push3_lan)


async def test_stale_meter_fault(session: aiohttp.ClientSession, push3_lan: Push3Lan) -> None:
    before = (await body(session, push3_lan))[DEMO_METER]
    push3_lan.faults.lan_stale_meters = [DEMO_METER]
    push3_lan.fleet.advance(600)
    data = await body(session, push3_lan, cnt="3")
    assert data[DEMO_METER][-1] == before[-1]  # the gateway keeps its last read
    assert (
        data[DEMO_SUBPANEL_METER][-1]["Time_Stamp_UTC_ms"]
        == before[-1]["Time_Stamp_UTC_ms"] + 600_000
    )
    push3_lan.faults.lan_stale_meters = []
    fresh = await body(session, push3_lan)
    assert fresh[DEMO_METER][-1]["Time_Stamp_UTC_ms"] > before[-1]["Time_Stamp_UTC_ms"]


async def test_faults_through_the_cloud_admin(
    session: aiohttp.ClientSession, cloud: CloudSimulator, push3_lan: Push3Lan
) -> None:
    """The cloud fixture and push3_lan share one Faults: /_sim/faults sets lan_* knobs."""
    assert push3_lan.faults is cloud.faults
    admin = f"{cloud.url}/_sim/faults"
    async with session.post(admin, json={"lan_wrong_key": True, "lan_latency_s": 0}) as r:
        assert r.status == 200
        assert (await r.json())["lan_wrong_key"] is True
    assert (await get(session, push3_lan))[0] == 500
    for bad in ({"lan_fail_next": [404]}, {"lan_malformed": "nope"}, {"lan_drop": 1},
                {"lan_stale_meters": ["x"]}, {"lan_error_rates": {"500": 2}},
                {"lan_latency_s": -1}):  # fmt: skip
        async with session.post(admin, json=bad) as r:
            assert r.status == 400, bad
    async with session.post(admin, json={"lan_stale_meters": [10389]}) as r:
        assert (await r.json())["lan_stale_meters"] == [DEMO_METER]
    async with session.delete(admin) as r:
        assert (await r.json())["lan_wrong_key"] is False
    assert (await get(session, push3_lan))[0] == 200


def test_lan_read_wire_form() -> None:
    fleet = Fleet.demo()
    fleet.advance_to()
    meter = fleet.meters[DEMO_METER]
    stored = fleet.latest(DEMO_METER)
    assert stored is not None
    read = lan_read(meter, stored)
    assert read["Reliability_Ratio"] == 100
    assert set(stored) - set(read) == {
        "Good",
        "Date",
        "Time",
        *(f"Power_Factor_Ln_{n}" for n in (1, 2, 3)),
    }


# --- ports and python -m ekmsim ------------------------------------------------------------------


def free_base() -> int:
    """A port p with p and p+1 free (probably still free a moment later)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = int(first.getsockname()[1])
            with socket.socket() as second, contextlib.suppress(OSError):
                second.bind(("127.0.0.1", base + 1))
                return base
    raise AssertionError("no two consecutive free ports")


async def test_ports_by_mac() -> None:
    fleet = Fleet.demo()
    base = free_base()
    sim = LanSimulator(fleet)
    await sim.start("127.0.0.1", base)
    try:
        assert [(gw.mac, gw.port) for gw in sim.gateways.values()] == [
            (DEMO_GARAGE_MAC, base),  # 4016fa010226 < 4016fa0500cd
            (DEMO_GATEWAY_MAC, base + 1),
        ]
        assert sim.gateway("40:16:FA:05:00:CD").host == f"127.0.0.1:{base + 1}"
    finally:
        await sim.stop()


async def test_busy_port_fails_cleanly() -> None:
    fleet = Fleet.demo()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        sim = LanSimulator(fleet)
        with pytest.raises(OSError):
            await sim.start("127.0.0.1", port - 1)  # the second gateway's port is taken
    assert all(gw.runner is None for gw in sim.gateways.values())


def test_options() -> None:
    args = sim_main.build_parser().parse_args([])
    assert (args.lan_port, args.no_lan) == (None, False)
    assert DEFAULT_LAN_PORT == 8790
    args = sim_main.build_parser().parse_args(["--lan-port", "9000", "--no-lan"])
    assert (args.lan_port, args.no_lan) == (9000, True)
    assert [s.name for s in sim_main.SERVICES][-1] == "lan"


async def test_run_prints_each_gateway(
    session: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m ekmsim --port 0``: any free LAN ports, one line per gateway, shared faults."""
    args = sim_main.build_parser().parse_args(["--port", "0", "--backfill", "2"])
    stop = asyncio.Event()
    task = asyncio.create_task(sim_main.run(args, stop))
    out = ""
    try:
        async with asyncio.timeout(30):
            while "ready (Ctrl-C to stop)" not in out:
                await asyncio.sleep(0.05)
                out += capsys.readouterr().out
        lines = re.findall(
            r"gateway (\w{12}) \(([^)]+)\) LAN (http://127\.0\.0\.1:(\d+)) key: (\w+)", out
        )
        assert [(mac, name, key) for mac, name, _, _, key in lines] == [
            (DEMO_GARAGE_MAC, "Garage Push3", lan_key(DEMO_GARAGE_MAC)),
            (DEMO_GATEWAY_MAC, "Demo Push3", DEMO_LAN_KEY),
        ]
        url = lines[1][2]
        cloud = re.search(r"cloud: (http://127\.0\.0\.1:\d+)", out)
        assert cloud is not None
        params = {"key": DEMO_LAN_KEY}
        async with session.get(f"{url}/readMeter", params=params) as response:
            assert response.status == 200
            assert sorted(await response.json()) == [DEMO_SUBPANEL_METER, DEMO_METER]
        async with session.post(f"{cloud.group(1)}/_sim/faults", json={"lan_wrong_key": True}):
            pass
        async with session.get(f"{url}/readMeter", params=params) as response:
            assert response.status == 500
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert "lan_wrong_key" in out  # ADMIN_HELP documents the knobs


async def test_no_lan(capsys: pytest.CaptureFixture[str]) -> None:
    args = sim_main.build_parser().parse_args(["--port", "0", "--no-lan", "--backfill", "1"])
    stop = asyncio.Event()
    task = asyncio.create_task(sim_main.run(args, stop))
    out = ""
    try:
        async with asyncio.timeout(30):
            while "ready (Ctrl-C to stop)" not in out:
                await asyncio.sleep(0.05)
                out += capsys.readouterr().out
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert " LAN http://" not in out
