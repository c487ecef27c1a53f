"""The simulated control APIs over real HTTP: Settings API (sendCommand) and Trigger API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import re
import ssl
from typing import Any

import aiohttp
import pytest

from custom_components.ekm.pyekm.models import MeterReading
from custom_components.ekm.pyekm.mqtt import EkmGatewayKeyError, EkmPushStream, create_ssl_context
from ekmsim.cloud import ADMIN_HELP, ENDPOINTS, CloudSimulator, Faults
from ekmsim.control import TRIGGER_NOT_FOUND, normalize_mac
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_API_TOKEN,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    DEMO_METER_KEY,
    Fleet,
    ReadBatch,
    SimClock,
    SimCommand,
)
from ekmsim.mqtt import MqttSimulator

START = 1_790_000_000.0  # not on the 60 s grid
KEY = DEMO_ACCOUNT_KEY
V3_METER = "000000010388"
V5_METER = "000000015635"
GARAGE_MAC = "4016fa010226"
READ_TOKEN = "ekmsim-read-only-token-0123456789"
OTHER_TOKEN = "ekmsim-other-account-token-9876543210"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
FORBIDDEN = {"error": "Unauthorized - invalid key or API token"}


@pytest.fixture(autouse=True)
def token_is_a_secret(pytestconfig: pytest.Config) -> None:
    """Let the leak guard (tests/conftest.py) check the API tokens too."""
    for plugin in pytestconfig.pluginmanager.get_plugins():
        add = getattr(plugin, "add_secret", None)
        if callable(add) and str(getattr(plugin, "__file__", "")).endswith("tests/conftest.py"):
            for token in (DEMO_API_TOKEN, READ_TOKEN, OTHER_TOKEN):
                add(token)


@pytest.fixture
def fleet() -> Fleet:
    world = Fleet.demo(clock=SimClock(START, manual=True))
    world.backfill(20)
    world.add_token(READ_TOKEN, write=False)
    world.add_token(OTHER_TOKEN, account_key="b3RoZXI6YWNjb3VudA")
    return world


@pytest.fixture
async def sim(fleet: Fleet) -> AsyncIterator[CloudSimulator]:
    async with CloudSimulator(fleet, faults=Faults(command_delay_s=0)) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def relay_body(
    meter: str = DEMO_METER, relay: str = "relay_1", status: str = "close", **params: Any
) -> dict[str, Any]:
    return {
        "target": "meter",
        "target_id": meter,
        "command": "SetRelay",
        "client": "ekmsim-tests",
        "params": {"relay": relay, "status": status, **params},
    }


async def send(
    http: aiohttp.ClientSession,
    sim: CloudSimulator,
    body: Any,
    *,
    key: str | None = KEY,
    gateway: str | None = DEMO_GATEWAY_MAC,
    token: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    params = {k: v for k, v in (("key", key), ("gateway", gateway)) if v is not None}
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
    async with http.post(
        f"{sim.url}/sendCommand", params=params, headers=headers, **kwargs
    ) as response:
        text = await response.text()
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, text


async def trigger(
    http: aiohttp.ClientSession,
    sim: CloudSimulator,
    method: str = "GET",
    body: Any = None,
    *,
    token: str | None = DEMO_API_TOKEN,
    raw: bytes | None = None,
    **params: str,
) -> tuple[int, Any]:
    params.setdefault("key", KEY)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
    async with http.request(
        method, f"{sim.url}/api/trigger", params=params, headers=headers, **kwargs
    ) as response:
        text = await response.text()
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, text


async def admin(
    http: aiohttp.ClientSession, sim: CloudSimulator, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, f"{sim.url}{path}", json=body) as response:
        return response.status, await response.json()


async def wait_until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not predicate():
            await asyncio.sleep(0.002)


async def handled(sim: CloudSimulator) -> list[SimCommand]:
    """Wait until no received command is queued any more; returns the log."""
    await wait_until(lambda: all(c.outcome != "queued" for c in sim.control.commands))
    return list(sim.control.commands)


async def latest_read(
    http: aiohttp.ClientSession, sim: CloudSimulator, meter: str = DEMO_METER
) -> dict[str, Any]:
    async with http.get(
        f"{sim.url}/readMeter", params={"key": KEY, "meters": meter, "cnt": "1"}
    ) as response:
        body = await response.json()
    read: dict[str, Any] = body["readMeter"]["ReadSet"][0]["ReadData"][-1]
    return read


# --- Settings API ----------------------------------------------------------------------------


async def test_relays_on_and_off_reported_at_once(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    meter = sim.fleet.meters[DEMO_METER]
    history = sim.fleet.history(DEMO_METER)
    before = len(history)
    now_ms = int(START * 1000)
    steps = [
        ("relay_1", "close", [True, False], "3"),  # OnOff
        ("relay_2", "close", [True, True], "4"),  # OnOn
        ("relay_1", "open", [False, True], "2"),  # OffOn
        ("relay_2", "open", [False, False], "1"),  # OffOff
    ]
    for i, (relay, status, relays, state_out) in enumerate(steps):
        code, answer = await send(http, sim, relay_body(relay=relay, status=status))
        assert code == 200, answer
        [command] = [c for c in await handled(sim) if c.msg_id == answer["msg_id"]]
        assert command.outcome == "applied"
        assert command.applied_at == START
        assert meter.relays == relays
        read = await latest_read(http, sim)
        assert read["State_Out"] == state_out
        # Reported once, at clock now, each one a millisecond after the one before.
        assert read["Time_Stamp_UTC_ms"] == now_ms + i
        assert len(history) == before + i + 1
    read = history[-1]
    assert set(read) >= {"Good", "Date", "Time", "Time_Stamp_UTC_ms", "kWh_Tot", "State_Out"}
    assert (read["Date"], read["Time"]) == ("2026-09-21", "14:13:20")
    assert read["kWh_Tot"] == meter.registers(START)["kWh_Tot"]  # registers: f(time)

    # The next interval's read comes after them: the history stays time-ordered.
    sim.fleet.advance(60)
    stamps = [int(r["Time_Stamp_UTC_ms"]) for r in history]
    assert stamps == sorted(stamps)
    assert stamps[-1] % 60000 == 0


async def test_answer_shape(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    code, answer = await send(http, sim, relay_body())
    assert code == 200
    assert set(answer) == {"msg_id", "response_channel_id", "response_channel_host"}
    assert HEX32.match(answer["msg_id"])
    assert HEX32.match(answer["response_channel_id"])
    assert isinstance(answer["response_channel_host"], str)
    assert answer["response_channel_host"]
    _, again = await send(http, sim, relay_body() | {"response_channel_id": "chan-7"})
    assert again["response_channel_id"] == "chan-7"
    assert again["msg_id"] != answer["msg_id"]


async def test_timed_relay_reverts(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    meter = sim.fleet.meters[V5_METER]
    assert meter.relays == [True, False]
    body = relay_body(V5_METER, "relay_2", "close", duration=5)
    assert (await send(http, sim, body, gateway=GARAGE_MAC))[0] == 200
    await handled(sim)
    assert meter.relays == [True, True]
    assert (await latest_read(http, sim, V5_METER))["State_Out"] == "4"
    await admin(http, sim, "POST", "/_sim/advance", {"seconds": 60})
    assert (await latest_read(http, sim, V5_METER))["State_Out"] == "3"
    assert meter.relays == [True, False]


async def test_hold_is_the_default_duration(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    assert (await send(http, sim, relay_body()))[0] == 200
    await handled(sim)
    sim.fleet.advance(3600)
    assert sim.fleet.meters[DEMO_METER].relays == [True, False]
    assert sim.fleet.latest(DEMO_METER)["State_Out"] == 3  # type: ignore[index]


async def test_v3_meter_ignores_it(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    before = len(sim.fleet.history(V3_METER))
    code, answer = await send(http, sim, relay_body(V3_METER))
    assert code == 200
    assert HEX32.match(answer["msg_id"])
    [command] = await handled(sim)
    assert command.outcome == "ignored"
    assert sim.fleet.meters[V3_METER].relays == [False, False]
    assert len(sim.fleet.history(V3_METER)) == before


async def test_silent_meter_does_not_answer(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    meter = sim.fleet.meters[DEMO_METER]
    meter.responsive = False
    sim.fleet.clock.advance(1)  # silent from now on
    before = len(sim.fleet.history(DEMO_METER))
    assert (await send(http, sim, relay_body()))[0] == 200
    [command] = await handled(sim)
    assert command.outcome == "no_answer"
    assert meter.relays == [False, False]
    assert len(sim.fleet.history(DEMO_METER)) == before
    assert sim.fleet.report_now(DEMO_METER) is None


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"command": "SetLcd"}, "Unknown command"),
        ({"command": None}, "Unknown command"),
        ({"target": "gateway"}, "target"),
        ({"target_id": "000000099999"}, "target_id"),
        ({"target_id": V5_METER}, "target_id"),  # on the other gateway
        ({"target_id": 10389}, "target_id"),
        ({"target_id": "10389"}, "target_id"),  # 12 digits
        ({"client": 7}, "client"),
        ({"response_channel_id": ["x"]}, "response_channel_id"),
        ({"params": None}, "params"),
        ({"params": ["relay_1"]}, "params"),
        ({"params": {"status": "close"}}, "relay"),
        ({"params": {"relay": "relay_3", "status": "close"}}, "relay"),
        ({"params": {"relay": "relay_1", "status": "on"}}, "status"),
        ({"params": {"relay": "relay_1"}}, "status"),
        ({"params": {"relay": "relay_1", "status": "open", "duration": -1}}, "duration"),
        ({"params": {"relay": "relay_1", "status": "open", "duration": 10000}}, "duration"),
        ({"params": {"relay": "relay_1", "status": "open", "duration": "5"}}, "duration"),
        ({"params": {"relay": "relay_1", "status": "open", "duration": 1.5}}, "duration"),
        ({"params": {"relay": "relay_1", "status": "open", "duration": True}}, "duration"),
    ],
)
async def test_invalid_commands(
    http: aiohttp.ClientSession, sim: CloudSimulator, change: dict[str, Any], needle: str
) -> None:
    code, answer = await send(http, sim, relay_body() | change)
    assert code == 400
    assert set(answer) == {"error"}
    assert needle in answer["error"]
    assert not sim.control.commands


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"SetRelay"'])
async def test_body_not_an_object(
    http: aiohttp.ClientSession, sim: CloudSimulator, raw: bytes
) -> None:
    code, answer = await send(http, sim, None, raw=raw)
    assert (code, answer) == (400, {"error": "The body must be a JSON object"})


async def test_duration_limits(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    for duration in (0, 9999):
        assert (await send(http, sim, relay_body(duration=duration)))[0] == 200
    assert [c.duration_s for c in await handled(sim)] == [0, 9999]


async def test_keys_and_gateways(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    body = relay_body()
    assert await send(http, sim, body, key=None) == (
        401,
        {"error": "Unauthorized - key required"},
    )
    assert await send(http, sim, body, key="nope") == (403, {"error": "Unauthorized - invalid key"})
    sim.fleet.revoke(KEY)
    assert (await send(http, sim, body))[0] == 403
    sim.fleet.restore(KEY)

    # A gateway key reaches its own gateway only (and may leave the MAC out).
    assert (await send(http, sim, body, key=DEMO_GATEWAY_KEY))[0] == 200
    assert (await send(http, sim, body, key=DEMO_GATEWAY_KEY, gateway=None))[0] == 200
    garage = relay_body(V5_METER)
    assert (await send(http, sim, garage, key=DEMO_GATEWAY_KEY, gateway=GARAGE_MAC))[0] == 403
    assert (await send(http, sim, body, key=DEMO_GATEWAY_KEY, gateway="4016fa999999"))[0] == 403

    # An account key must name a gateway it knows; MACs in any case, with separators.
    code, answer = await send(http, sim, body, gateway=None)
    assert (code, "gateway" in answer["error"]) == (400, True)
    code, answer = await send(http, sim, body, gateway="4016fa999999")
    assert (code, answer) == (400, {"error": "Unknown gateway 4016fa999999"})
    assert (await send(http, sim, body, gateway="not-a-mac"))[0] == 400
    assert (await send(http, sim, body, gateway="40:16:FA:05:00:CD"))[0] == 200
    assert (await send(http, sim, body, gateway="40-16-fa-05-00-cd"))[0] == 200
    # One edition of EKM's docs puts the key in the body.
    assert (await send(http, sim, body | {"key": KEY}, key=None))[0] == 200

    log = await handled(sim)
    assert len(log) == 5
    assert all(c.gateway == DEMO_GATEWAY_MAC for c in log)
    assert all("key" not in c.body for c in log)


async def test_a_meter_key_commands_nothing(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    """A tenant's meter key may not command the gateway, not even its own meter's relay."""
    body = relay_body()  # the meter the key is for
    forbidden = (403, {"error": "Unauthorized - invalid key"})
    assert await send(http, sim, body, key=DEMO_METER_KEY) == forbidden
    assert await send(http, sim, body, key=DEMO_METER_KEY, gateway=None) == forbidden
    assert await send(http, sim, relay_body(V5_METER), key=DEMO_METER_KEY,
                      gateway=GARAGE_MAC) == forbidden  # fmt: skip
    assert await send(http, sim, body | {"key": DEMO_METER_KEY}, key=None) == forbidden
    assert await send(http, sim, body, key=DEMO_METER_KEY, token=DEMO_API_TOKEN) == (
        403,
        FORBIDDEN,
    )
    uid = next(iter(sim.fleet.triggers[DEMO_GATEWAY_MAC]))
    for method, params in (
        ("GET", {"gateway": DEMO_GATEWAY_MAC}),
        ("GET", {"trigger": uid}),
        ("POST", {"gateway": DEMO_GATEWAY_MAC}),
        ("PUT", {"trigger": uid}),
        ("DELETE", {"trigger": uid}),
    ):
        answer = await trigger(http, sim, method, {"trigger_name": "x"}, key=DEMO_METER_KEY,
                               **params)  # fmt: skip
        assert answer == (403, FORBIDDEN), (method, params)
    assert await handled(sim) == []
    assert sim.fleet.meters[DEMO_METER].relays == [False, False]
    assert len(sim.fleet.triggers[DEMO_GATEWAY_MAC]) == 1


async def test_a_meter_key_is_no_mqtt_key(sim: CloudSimulator) -> None:
    """EKM's broker takes gateway keys only: a meter key cannot follow the gateway."""
    broker = MqttSimulator(sim.fleet)
    await broker.start(port=0)
    try:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext = await loop.run_in_executor(
            None, create_ssl_context, broker.ca_file
        )
        stream = EkmPushStream(DEMO_METER_KEY, server=broker.url, ssl_context=context)
        with pytest.raises(EkmGatewayKeyError):
            async with stream.connect():
                pytest.fail("connected")
    finally:
        await broker.stop()


def test_normalize_mac() -> None:
    assert normalize_mac(" 40:16:FA:05:00:CD ") == DEMO_GATEWAY_MAC
    assert normalize_mac("4016FA0500CD") == DEMO_GATEWAY_MAC
    assert normalize_mac("4016fa0500c") is None
    assert normalize_mac("4016fa0500cg") is None


async def test_bearer_tokens(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    body = relay_body()
    # Not required by default, but a token that is sent must be valid.
    assert (await send(http, sim, body))[0] == 200
    assert (await send(http, sim, body, token=DEMO_API_TOKEN))[0] == 200
    assert (await send(http, sim, body, token=READ_TOKEN))[0] == 200  # not the Trigger API
    assert await send(http, sim, body, token="wrong") == (403, FORBIDDEN)
    assert (await send(http, sim, body, token=OTHER_TOKEN))[0] == 403
    assert (await send(http, sim, body, token=""))[0] == 403

    sim.faults.update({"command_token_required": True})
    assert await send(http, sim, body) == (401, {"error": "Unauthorized - API token required"})
    assert await send(http, sim, body, token="wrong") == (403, FORBIDDEN)
    assert (await send(http, sim, body, token=DEMO_API_TOKEN))[0] == 200
    assert (await send(http, sim, body, key=None, token=DEMO_API_TOKEN))[0] == 401
    status, _ = await admin(http, sim, "POST", "/_sim/keys/revoke", {"key": DEMO_API_TOKEN})
    assert status == 200
    assert await send(http, sim, body, token=DEMO_API_TOKEN) == (403, FORBIDDEN)
    assert len(await handled(sim)) == 4


async def test_drop_commands(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    sim.faults.drop_commands = True
    code, answer = await send(http, sim, relay_body())
    assert code == 200
    assert HEX32.match(answer["msg_id"])
    [command] = await handled(sim)
    assert command.outcome == "dropped"
    await asyncio.sleep(0.01)
    assert sim.fleet.meters[DEMO_METER].relays == [False, False]
    assert command.applied_at is None
    assert not sim.fleet.gateways[DEMO_GATEWAY_MAC].commands


async def test_offline_gateway_keeps_commands(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    meter = sim.fleet.meters[DEMO_METER]
    status, gw = await admin(http, sim, "POST", f"/_sim/gateways/{DEMO_GATEWAY_MAC}",
                             {"online": False})  # fmt: skip
    assert (status, gw["online"]) == (200, False)
    assert (await send(http, sim, relay_body()))[0] == 200
    assert (await send(http, sim, relay_body(relay="relay_2")))[0] == 200
    await wait_until(lambda: all(c.ready for c in sim.control.commands))
    await asyncio.sleep(0.01)
    assert [c.outcome for c in sim.control.commands] == ["queued", "queued"]
    assert meter.relays == [False, False]
    assert len(sim.fleet.gateways[DEMO_GATEWAY_MAC].commands) == 2

    sim.fleet.clock.advance(30)
    await admin(http, sim, "POST", f"/_sim/gateways/{DEMO_GATEWAY_MAC}", {"online": True})
    log = await handled(sim)
    assert [(c.outcome, c.applied_at) for c in log] == [("applied", START + 30)] * 2
    assert meter.relays == [True, True]
    assert (await latest_read(http, sim))["State_Out"] == "4"
    assert not sim.fleet.gateways[DEMO_GATEWAY_MAC].commands


async def test_delay_and_stop_cancels(http: aiohttp.ClientSession, fleet: Fleet) -> None:
    async with CloudSimulator(fleet, faults=Faults(command_delay_s=0.05)) as sim:
        assert (await send(http, sim, relay_body()))[0] == 200
        [command] = sim.control.commands
        assert command.outcome == "queued"  # 200 = delivered to the gateway, not executed
        await handled(sim)
        assert command.outcome == "applied"
        assert fleet.meters[DEMO_METER].relays == [True, False]

        sim.faults.update({"command_delay_s": 60})
        assert (await send(http, sim, relay_body(status="open")))[0] == 200
        assert len(fleet.gateways[DEMO_GATEWAY_MAC].commands) == 1
    assert sim.control.commands[-1].outcome == "cancelled"
    assert not fleet.gateways[DEMO_GATEWAY_MAC].commands
    assert fleet.meters[DEMO_METER].relays == [True, False]


async def test_report_visible_over_mqtt(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    broker = MqttSimulator(sim.fleet)
    await broker.start(port=0)
    try:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext = await loop.run_in_executor(
            None, create_ssl_context, broker.ca_file
        )
        stream = EkmPushStream(DEMO_GATEWAY_KEY, server=broker.url, ssl_context=context,
                               summary=False)  # fmt: skip
        async with stream.connect() as events:
            assert (await send(http, sim, relay_body(relay="relay_2")))[0] == 200
            async with asyncio.timeout(30):
                event = await anext(events)
    finally:
        await broker.stop()
    assert isinstance(event, MeterReading)
    assert event.address == DEMO_METER
    assert event.timestamp_ms == int(START * 1000)
    assert event.number("State_Out") == 2  # OffOn


def test_report_now_in_the_fleet(fleet: Fleet) -> None:
    got: list[ReadBatch] = []
    fleet.subscribe(got.append)
    fleet.clock.advance(150)  # two boundaries not read yet
    read = fleet.report_now(DEMO_METER)
    assert read is not None
    # The missed boundaries came first, then the one read at clock now.
    assert [len(batch) for batch in got] == [5, 5, 1]
    assert got[-1] == [(fleet.meters[DEMO_METER], read)]
    assert read["Time_Stamp_UTC_ms"] == int((START + 150) * 1000)
    again = fleet.report_now(DEMO_METER)
    assert again is not None
    assert again["Time_Stamp_UTC_ms"] == read["Time_Stamp_UTC_ms"] + 1
    assert set(again) == set(fleet.history(DEMO_METER)[0])
    fleet.advance(60)
    stamps = [int(r["Time_Stamp_UTC_ms"]) for r in fleet.history(DEMO_METER)]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


def test_demo_and_generated_fleets_have_tokens_and_triggers() -> None:
    demo = Fleet.demo()
    assert demo.token(DEMO_API_TOKEN) is not None
    assert demo.api_tokens[DEMO_API_TOKEN].write
    assert demo.api_tokens[DEMO_API_TOKEN].account_key == DEMO_ACCOUNT_KEY
    assert set(demo.triggers) == set(demo.gateways)
    for mac, by_uuid in demo.triggers.items():
        [(uid, stored)] = by_uuid.items()
        assert HEX32.match(uid)
        assert stored["trigger_uuid"] == uid
        assert stored["gateway"] == mac
        assert stored["trigger_name"] == "Shed water heater at peak"
    assert Fleet.demo().triggers == demo.triggers  # stable uuids
    generated = Fleet.generate(3, account_key="R2VuOmtleQ")
    assert generated.api_tokens[DEMO_API_TOKEN].account_key == "R2VuOmtleQ"
    demo.revoke(DEMO_API_TOKEN)
    assert demo.token(DEMO_API_TOKEN) is None
    assert demo.token(None) is None
    assert demo.key_type(DEMO_API_TOKEN) is None  # a token is not a key


# --- Trigger API -----------------------------------------------------------------------------


async def test_trigger_crud(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    code, listed = await trigger(http, sim, gateway=DEMO_GATEWAY_MAC)
    assert code == 200
    [seeded] = listed["triggers"]
    assert seeded["trigger_name"] == "Shed water heater at peak"
    uid = seeded["trigger_uuid"]
    assert await trigger(http, sim, trigger=uid) == (200, {"triggers": [seeded]})
    assert await trigger(http, sim, trigger=uid.upper()) == (200, {"triggers": [seeded]})

    new = {
        "trigger_name": "Night heater",
        "trigger_uuid": "f" * 32,  # the server picks the uuid
        "condition": {"anything": [1, 2, 3]},
        "x-extra": None,
    }
    code, created = await trigger(http, sim, "POST", new, gateway="40:16:FA:05:00:CD")
    assert code == 200
    new_uid = created["trigger_uuid"]
    assert HEX32.match(new_uid)
    assert new_uid not in (uid, "f" * 32)
    assert created == {"trigger_uuid": new_uid, "gateway": DEMO_GATEWAY_MAC,
                       "trigger_name": "Night heater", "condition": {"anything": [1, 2, 3]},
                       "x-extra": None}  # fmt: skip
    _, listed = await trigger(http, sim, gateway=DEMO_GATEWAY_MAC)
    assert [t["trigger_uuid"] for t in listed["triggers"]] == [uid, new_uid]
    _, garage = await trigger(http, sim, gateway=GARAGE_MAC)
    assert len(garage["triggers"]) == 1

    change = {"trigger_name": "Night heater (weekdays)", "gateway": GARAGE_MAC}
    code, updated = await trigger(http, sim, "PUT", change, trigger=new_uid)
    assert code == 200
    assert updated == {"trigger_uuid": new_uid, "gateway": DEMO_GATEWAY_MAC,
                       "trigger_name": "Night heater (weekdays)"}  # fmt: skip
    assert await trigger(http, sim, trigger=new_uid) == (200, {"triggers": [updated]})

    code, store = await admin(http, sim, "GET", "/_sim/triggers")
    assert code == 200
    assert store[DEMO_GATEWAY_MAC][new_uid] == updated

    assert await trigger(http, sim, "DELETE", trigger=new_uid) == (
        200,
        {"trigger_uuid": new_uid, "deleted": True},
    )
    assert await trigger(http, sim, trigger=new_uid) == (404, {"error": TRIGGER_NOT_FOUND})
    assert (await trigger(http, sim, "DELETE", trigger=new_uid))[0] == 404
    assert new_uid not in sim.fleet.triggers[DEMO_GATEWAY_MAC]

    async with http.get(
        f"{sim.url}/api/trigger",
        params={"key": KEY, "gateway": DEMO_GATEWAY_MAC, "indent": "2"},
        headers={"Authorization": f"Bearer {DEMO_API_TOKEN}"},
    ) as response:
        assert "\n  " in await response.text()
    assert sim.requests["trigger"] == 12


async def test_trigger_tokens(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    uid = next(iter(sim.fleet.triggers[DEMO_GATEWAY_MAC]))
    assert await trigger(http, sim, token=None, gateway=DEMO_GATEWAY_MAC) == (403, FORBIDDEN)
    assert await trigger(http, sim, token="wrong", trigger=uid) == (403, FORBIDDEN)
    assert (await trigger(http, sim, token="", trigger=uid))[0] == 403
    assert (await trigger(http, sim, token=OTHER_TOKEN, trigger=uid))[0] == 403
    async with http.get(
        f"{sim.url}/api/trigger",
        params={"key": KEY, "trigger": uid},
        headers={"Authorization": f"Basic {DEMO_API_TOKEN}"},
    ) as response:
        assert response.status == 403

    # READ: GET only.
    assert (await trigger(http, sim, token=READ_TOKEN, trigger=uid))[0] == 200
    named = {"trigger_name": "x"}
    for method, params in (("POST", {"gateway": DEMO_GATEWAY_MAC}), ("PUT", {"trigger": uid}),
                           ("DELETE", {"trigger": uid})):  # fmt: skip
        code, answer = await trigger(http, sim, method, named, token=READ_TOKEN, **params)
        assert (code, answer) == (403, FORBIDDEN), method
    assert uid in sim.fleet.triggers[DEMO_GATEWAY_MAC]

    # Tokens can be added and revoked over the admin API.
    assert await admin(http, sim, "POST", "/_sim/tokens", {"token": "t2", "write": False}) == (
        200,
        {"write": False},
    )
    assert (await trigger(http, sim, "DELETE", token="t2", trigger=uid))[0] == 403
    assert (await trigger(http, sim, token="t2", trigger=uid))[0] == 200
    for bad in ({"token": ""}, {"token": "t3", "write": "yes"}, ["t3"], None):
        assert (await admin(http, sim, "POST", "/_sim/tokens", bad))[0] == 400
    await admin(http, sim, "POST", "/_sim/keys/revoke", {"key": DEMO_API_TOKEN})
    assert (await trigger(http, sim, trigger=uid))[0] == 403
    await admin(http, sim, "POST", "/_sim/keys/restore", {"key": DEMO_API_TOKEN})
    assert (await trigger(http, sim, trigger=uid))[0] == 200


async def test_trigger_keys_and_parameters(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    uid = next(iter(sim.fleet.triggers[DEMO_GATEWAY_MAC]))
    garage_uid = next(iter(sim.fleet.triggers[GARAGE_MAC]))
    assert (await trigger(http, sim, key="", trigger=uid))[0] == 401
    assert await trigger(http, sim, key="nope", trigger=uid) == (403, FORBIDDEN)

    # A gateway key reaches its own gateway's triggers only: 403 (not 404) for others.
    assert (await trigger(http, sim, key=DEMO_GATEWAY_KEY, trigger=uid))[0] == 200
    assert (await trigger(http, sim, key=DEMO_GATEWAY_KEY, gateway=DEMO_GATEWAY_MAC))[0] == 200
    assert await trigger(http, sim, key=DEMO_GATEWAY_KEY, trigger=garage_uid) == (403, FORBIDDEN)
    assert await trigger(http, sim, key=DEMO_GATEWAY_KEY, gateway=GARAGE_MAC) == (403, FORBIDDEN)
    code, _ = await trigger(http, sim, "PUT", {"trigger_name": "x"}, key=DEMO_GATEWAY_KEY,
                            trigger=garage_uid)  # fmt: skip
    assert code == 403
    code, _ = await trigger(http, sim, "POST", {"trigger_name": "x"}, key=DEMO_GATEWAY_KEY,
                            gateway=GARAGE_MAC)  # fmt: skip
    assert code == 403

    # Exactly one of gateway / trigger, the one the method takes.
    for method, params in (
        ("GET", {}),
        ("GET", {"gateway": DEMO_GATEWAY_MAC, "trigger": uid}),
        ("POST", {"trigger": uid}),
        ("PUT", {"gateway": DEMO_GATEWAY_MAC}),
        ("DELETE", {"gateway": DEMO_GATEWAY_MAC}),
        ("DELETE", {}),
        ("GET", {"gateway": "4016fa99999"}),
        ("GET", {"gateway": "4016fa999999"}),  # an account key, an unknown gateway
    ):
        code, answer = await trigger(http, sim, method, {"trigger_name": "x"}, **params)
        assert code == 400, (method, params)
        assert isinstance(answer["error"], str)

    assert await trigger(http, sim, trigger="0" * 32) == (404, {"error": TRIGGER_NOT_FOUND})
    assert (await trigger(http, sim, trigger="not-a-uuid"))[0] == 404
    assert (await trigger(http, sim, "PUT", {"trigger_name": "x"}, trigger="0" * 32))[0] == 404

    # The body: a JSON object with a string trigger_name.
    for raw in (b"", b"nope", b"[]", b'{"trigger_name": 5}', b'{"name": "x"}'):
        for method, params in (("POST", {"gateway": DEMO_GATEWAY_MAC}), ("PUT", {"trigger": uid})):
            code, answer = await trigger(http, sim, method, raw=raw, **params)
            assert code == 400, (method, raw)
            assert isinstance(answer["error"], str)
    assert len(sim.fleet.triggers[DEMO_GATEWAY_MAC]) == 1
    assert sim.fleet.triggers[DEMO_GATEWAY_MAC][uid]["trigger_name"] == "Shed water heater at peak"


# --- faults, counting, admin -----------------------------------------------------------------


async def test_faults_on_the_control_endpoints(
    http: aiohttp.ClientSession, sim: CloudSimulator
) -> None:
    sim.faults.fail_next = [503, 429]
    assert (await send(http, sim, relay_body()))[0] == 503
    code, _ = await trigger(http, sim, gateway=DEMO_GATEWAY_MAC)
    assert code == 429
    assert not sim.control.commands  # a failed request queues nothing

    sim.faults.update({"only_endpoints": ["trigger"], "error_rates": {"500": 1}})
    assert (await send(http, sim, relay_body()))[0] == 200
    code, text = await trigger(http, sim, gateway=DEMO_GATEWAY_MAC)
    assert code == 500
    assert "Server Error" in text

    sim.faults.update({"only_endpoints": ["sendCommand"], "error_rates": {},
                       "malformed": "not_json"})  # fmt: skip
    async with http.post(
        f"{sim.url}/sendCommand",
        params={"key": KEY, "gateway": DEMO_GATEWAY_MAC},
        json=relay_body(),
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
    assert (await trigger(http, sim, gateway=DEMO_GATEWAY_MAC))[0] == 200

    sim.faults.reset()
    sim.faults.update({"rate_limit": 1, "command_delay_s": 0})
    assert (await send(http, sim, relay_body()))[0] == 200
    async with http.post(
        f"{sim.url}/sendCommand", params={"key": KEY, "gateway": DEMO_GATEWAY_MAC}, json={}
    ) as response:
        assert response.status == 429
        assert response.headers["Retry-After"]
    sim.faults.update({"rate_limit": None, "latency_s": 0.01})
    assert (await trigger(http, sim, gateway=DEMO_GATEWAY_MAC))[0] == 200

    assert sim.requests["sendCommand"] == 5
    assert sim.requests["trigger"] == 4
    logged = [q for name, q in sim.request_log if name in ("sendCommand", "trigger")]
    assert len(logged) == 9
    assert all("key" not in q for q in logged)
    assert DEMO_API_TOKEN not in str(list(sim.request_log))


async def test_control_faults_over_http(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    assert Faults().command_delay_s == 2.0
    change = {"command_delay_s": 0.5, "drop_commands": True, "command_token_required": True,
              "only_endpoints": ["sendCommand", "trigger"]}  # fmt: skip
    status, faults = await admin(http, sim, "POST", "/_sim/faults", change)
    assert status == 200
    assert {k: faults[k] for k in change} == change
    for bad in (
        {"command_delay_s": -1},
        {"command_delay_s": "2"},
        {"command_delay_s": True},
        {"drop_commands": "yes"},
        {"command_token_required": 1},
    ):
        status, answer = await admin(http, sim, "POST", "/_sim/faults", bad)
        assert status == 400, bad
        assert "error" in answer
    await admin(http, sim, "DELETE", "/_sim/faults")
    assert sim.faults.command_delay_s == 2.0
    assert not sim.faults.drop_commands


async def test_admin_commands_and_state(http: aiohttp.ClientSession, sim: CloudSimulator) -> None:
    assert (await send(http, sim, relay_body(), token=DEMO_API_TOKEN))[0] == 200
    await handled(sim)
    status, log = await admin(http, sim, "GET", "/_sim/commands")
    assert status == 200
    [entry] = log
    assert entry["gateway"] == DEMO_GATEWAY_MAC
    assert entry["meter"] == DEMO_METER
    assert entry["body"] == relay_body()
    assert entry["time"] == START
    assert entry["applied_at"] == START
    assert entry["outcome"] == "applied"
    assert HEX32.match(entry["msg_id"])

    _, state = await admin(http, sim, "GET", "/_sim/state")
    assert state["commands"] == log
    assert set(state["triggers"]) == set(sim.fleet.gateways)
    assert KEY not in str(state)
    assert DEMO_API_TOKEN not in str(state)
    assert DEMO_GATEWAY_KEY not in str(state)

    assert await admin(http, sim, "DELETE", "/_sim/commands") == (200, [])
    assert (await admin(http, sim, "GET", "/_sim/commands"))[1] == []


def test_admin_help_lists_the_control_endpoints() -> None:
    for path in ("/_sim/commands", "/_sim/triggers", "/_sim/tokens"):
        assert path in ADMIN_HELP
    assert {"sendCommand", "trigger"} <= set(ENDPOINTS)


async def test_a_failing_application_is_logged_not_raised(
    http: aiohttp.ClientSession, sim: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(_command: SimCommand) -> list[SimCommand]:
        raise RuntimeError("boom")

    sim.fleet.command_ready = boom  # type: ignore[method-assign]
    assert (await send(http, sim, relay_body()))[0] == 200
    await wait_until(lambda: any("Applying command" in r.getMessage() for r in caplog.records))
    assert KEY not in caplog.text
