"""pyekm's control client (Settings and Trigger APIs) over real HTTP.

Against the simulated EKM cloud (ekmsim.control) for what it serves, and against a small
stand-in EKM server of this file for wire details the simulator does not produce: the
exact headers, an empty DELETE answer, a 401 to a request without a token, other answer
shapes and odd bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
import json
import socket
from typing import Any, NamedTuple, Self

import aiohttp
from aiohttp import web
import pytest

from custom_components.ekm.pyekm import (
    CLIENT_NAME,
    CommandReceipt,
    EkmAuthError,
    EkmConnectionError,
    EkmControlClient,
    EkmError,
    EkmForbiddenError,
    EkmInvalidParametersError,
    EkmRateLimitError,
    EkmRequestError,
    EkmResponseError,
    EkmServerError,
    EkmTimeoutError,
    EkmTokenError,
    EkmTokenRequiredError,
    EkmTriggerNotFoundError,
)
from custom_components.ekm.pyekm.control import CHECK_TOKEN_UUID
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    APPLIED,
    DEMO_ACCOUNT_KEY,
    DEMO_API_TOKEN,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    Fleet,
    SimClock,
)

START = 1_790_000_000.0
GARAGE_MAC = "4016fa010226"
V5_METER = "000000015635"
READ_TOKEN = "read-only-token-5f0e1d2c3b4a"
STANDIN_TOKEN = "stand-in-token-a1b2c3d4e5f6"
STANDIN_KEY = "U3RhbmQtaW46a2V5MTIz"
SECRETS = (DEMO_ACCOUNT_KEY, DEMO_GATEWAY_KEY, DEMO_API_TOKEN, READ_TOKEN, STANDIN_TOKEN,
           STANDIN_KEY)  # fmt: skip
UUID = "1c27d0dcefc811eb90b27de8d650408c"


@pytest.fixture(autouse=True)
def tokens_are_secrets(pytestconfig: pytest.Config) -> None:
    """Let the leak guard (tests/conftest.py) check the tokens and keys of this file too."""
    for plugin in pytestconfig.pluginmanager.get_plugins():
        if str(getattr(plugin, "__file__", "")).endswith("tests/conftest.py"):
            for secret in SECRETS:
                plugin.add_secret(secret)


def assert_no_secret(*things: object) -> None:
    """No key or token in the text or repr of anything given (errors, clients, answers)."""
    for thing in things:
        for text in (str(thing), repr(thing)):
            for secret in SECRETS:
                assert secret not in text


@pytest.fixture
def fleet() -> Fleet:
    """The demo fleet on a manual clock, with a READ-only token (conftest's ``cloud`` serves it)."""
    world = Fleet.demo(clock=SimClock(START, manual=True))
    world.backfill(5)
    world.add_token(READ_TOKEN, write=False)
    return world


@pytest.fixture
def sim(cloud: CloudSimulator) -> CloudSimulator:
    """The simulated cloud; its gateways apply commands on the next loop iterations."""
    cloud.faults.command_delay_s = 0
    return cloud


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def client(sim: CloudSimulator, session: aiohttp.ClientSession) -> EkmControlClient:
    assert sim.url is not None
    return EkmControlClient(
        session, DEMO_ACCOUNT_KEY, token=DEMO_API_TOKEN, server=sim.url + "/", timeout=5
    )


def demo_trigger_uuid(sim: CloudSimulator, mac: str = DEMO_GATEWAY_MAC) -> str:
    [uuid] = sim.fleet.triggers[mac]
    return uuid


# --- a stand-in EKM server -----------------------------------------------------------------


class Seen(NamedTuple):
    """A request the stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class StandIn:
    """An HTTP server that answers with what a test queued and records every request."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._answers: list[tuple[int, bytes, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def answer(
        self,
        body: Any = None,
        status: int = 200,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue an answer: ``body`` as JSON, or ``raw`` bytes as they are."""
        data = raw if raw is not None else json.dumps(body).encode()
        self._answers.append((status, data, headers or {}))

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers),
                 await request.read())
        )  # fmt: skip
        status, data, headers = self._answers.pop(0) if self._answers else (200, b"{}", {})
        return web.Response(
            status=status, body=data, headers=headers, content_type="application/json"
        )

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)  # its log would hold the key
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with StandIn() as server:
        yield server


@pytest.fixture
def stand_client(standin: StandIn, session: aiohttp.ClientSession) -> EkmControlClient:
    return EkmControlClient(session, STANDIN_KEY, token=STANDIN_TOKEN, server=standin.url)


async def expect(call: Awaitable[Any], expected: Any) -> None:
    """``call`` returns ``expected``, or raises it when it is an exception class."""
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected) as err:
            await call
        assert_no_secret(err.value)
    else:
        assert await call == expected


RECEIPT = {"msg_id": "m1", "response_channel_id": "c1", "response_channel_host": "h"}


# --- Settings API: the request ---------------------------------------------------------------


async def test_set_relay_request_shape_with_and_without_token(
    standin: StandIn, session: aiohttp.ClientSession
) -> None:
    without = EkmControlClient(session, STANDIN_KEY, server=standin.url + "/")
    standin.answer(RECEIPT)
    standin.answer(RECEIPT)

    await without.set_relay("40:16:FA:05:00:CD", "10389", 1, True, 5)
    without.token = STANDIN_TOKEN
    await without.set_relay("4016fa0500cd", DEMO_METER, 2, False)

    first, second = standin.seen
    assert (first.method, first.path) == ("POST", "/sendCommand")
    assert first.query == {"key": STANDIN_KEY, "gateway": DEMO_GATEWAY_MAC}
    assert first.headers["Content-Type"] == "application/json"
    assert "Authorization" not in first.headers
    assert json.loads(first.body) == {
        "target": "meter",
        "target_id": DEMO_METER,
        "command": "SetRelay",
        "client": CLIENT_NAME,
        "params": {"relay": "relay_1", "status": "close", "duration": 5},
    }
    assert second.headers["Authorization"] == f"Bearer {STANDIN_TOKEN}"
    assert json.loads(second.body)["params"] == {
        "relay": "relay_2",
        "status": "open",
        "duration": 0,
    }
    assert without.requests == 2


async def test_send_command_body_and_receipt(
    standin: StandIn, session: aiohttp.ClientSession
) -> None:
    client = EkmControlClient(
        session, STANDIN_KEY, token="", server=standin.url, client_name="my-app"
    )
    assert not client.has_token
    standin.answer({"msg_id": 42, "response_channel_host": "", "queued": True})

    receipt = await client.send_command(
        "4016FA0500CD", "SetLcd", "gateway", "abc", {"items": [1, 2]},
        response_channel_id="chan-7",
    )  # fmt: skip

    assert receipt == CommandReceipt(
        msg_id="42",
        response_channel_id=None,
        response_channel_host=None,
        raw={"msg_id": 42, "response_channel_host": "", "queued": True},
    )
    [seen] = standin.seen
    assert "Authorization" not in seen.headers
    assert json.loads(seen.body) == {
        "target": "gateway",
        "target_id": "abc",
        "command": "SetLcd",
        "client": "my-app",
        "params": {"items": [1, 2]},
        "response_channel_id": "chan-7",
    }


@pytest.mark.parametrize(
    ("gateway", "meter", "relay", "duration", "message"),
    [
        (DEMO_GATEWAY_MAC, DEMO_METER, 0, 0, "relay must be 1 or 2"),
        (DEMO_GATEWAY_MAC, DEMO_METER, 3, 0, "relay must be 1 or 2"),
        (DEMO_GATEWAY_MAC, DEMO_METER, True, 0, "relay must be 1 or 2"),
        (DEMO_GATEWAY_MAC, DEMO_METER, 1, -1, "duration_s must be 0 to 9999"),
        (DEMO_GATEWAY_MAC, DEMO_METER, 1, 10_000, "duration_s must be 0 to 9999"),
        (DEMO_GATEWAY_MAC, DEMO_METER, 1, 1.5, "duration_s must be 0 to 9999"),
        (DEMO_GATEWAY_MAC, DEMO_METER, 1, True, "duration_s must be 0 to 9999"),
        ("4016fa0500c", DEMO_METER, 1, 0, "12 hexadecimal digits"),
        ("4016fa0500cg", DEMO_METER, 1, 0, "12 hexadecimal digits"),
        (DEMO_GATEWAY_MAC, "1234567890123", 1, 0, "1 to 12 digits"),
    ],
)
async def test_set_relay_rejects_bad_arguments(
    stand_client: EkmControlClient,
    standin: StandIn,
    gateway: str,
    meter: str,
    relay: Any,
    duration: Any,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        await stand_client.set_relay(gateway, meter, relay, True, duration)
    assert standin.seen == []


async def test_set_relay_edges_are_accepted(
    stand_client: EkmControlClient, standin: StandIn
) -> None:
    await stand_client.set_relay(DEMO_GATEWAY_MAC, "1", 2, True, 9999)
    params = json.loads(standin.seen[0].body)
    assert params["target_id"] == "000000000001"
    assert params["params"]["duration"] == 9999


def test_token_property_and_repr(session: aiohttp.ClientSession) -> None:
    client = EkmControlClient(session, STANDIN_KEY, token=STANDIN_TOKEN)
    assert client.token == STANDIN_TOKEN
    assert client.has_token
    assert client.server == "https://api.ekmpush.com"
    assert repr(client) == "<EkmControlClient server='https://api.ekmpush.com' has_token=True>"
    client.token = ""
    assert client.token is None
    assert not client.has_token
    assert_no_secret(client)


# --- Settings API: through the simulator -----------------------------------------------------


async def test_set_relay_reaches_the_meter(client: EkmControlClient, sim: CloudSimulator) -> None:
    meter = sim.fleet.meters[DEMO_METER]
    assert meter.relays == [False, False]

    receipt = await client.set_relay(DEMO_GATEWAY_MAC, "10389", 1, True)

    assert receipt.msg_id is not None
    assert len(receipt.msg_id) == 32
    assert receipt.response_channel_id
    assert receipt.response_channel_host == sim.url.partition("//")[2]
    assert receipt.raw == {
        "msg_id": receipt.msg_id,
        "response_channel_id": receipt.response_channel_id,
        "response_channel_host": receipt.response_channel_host,
    }
    [command] = sim.control.commands
    assert command.body == {
        "target": "meter",
        "target_id": DEMO_METER,
        "command": "SetRelay",
        "client": CLIENT_NAME,
        "params": {"relay": "relay_1", "status": "close", "duration": 0},
    }
    for _ in range(100):  # the simulated gateway applies it on the next loop iterations
        if command.outcome == APPLIED:
            break
        await asyncio.sleep(0.01)
    assert command.outcome == APPLIED
    assert meter.relays == [True, False]
    assert sim.request_log[-1] == ("sendCommand", {"gateway": DEMO_GATEWAY_MAC})

    await client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, False, 30)
    assert sim.control.commands[-1].body["params"] == {
        "relay": "relay_1",
        "status": "open",
        "duration": 30,
    }


async def test_command_with_a_gateway_key_and_no_token(
    sim: CloudSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.url is not None
    client = EkmControlClient(session, DEMO_GATEWAY_KEY, server=sim.url)
    receipt = await client.send_command(
        DEMO_GATEWAY_MAC, "SetRelay", "meter", "10389", {"relay": "relay_2", "status": "close"}
    )
    assert receipt.msg_id
    assert sim.control.commands[-1].relay == 2

    with pytest.raises(EkmForbiddenError) as err:  # not its gateway
        await client.set_relay(GARAGE_MAC, V5_METER, 1, True)
    assert type(err.value) is EkmForbiddenError
    assert str(err.value) == "The EKM server rejected the key"
    client.token = DEMO_API_TOKEN
    with pytest.raises(EkmTokenError) as token_err:
        await client.set_relay(GARAGE_MAC, V5_METER, 1, True)
    assert str(token_err.value) == "The EKM server rejected the key or API token"
    assert_no_secret(err.value, token_err.value, client)


@pytest.mark.parametrize(
    ("call", "detail"),
    [
        (("SetLcd", "meter", DEMO_METER, {}), "Unknown command 'SetLcd' (known: SetRelay)"),
        (("SetRelay", "meter", V5_METER, {}),
         f"target_id: not a meter on gateway {DEMO_GATEWAY_MAC}"),
        (("SetRelay", "meter", DEMO_METER, {"relay": "relay_3"}),
         "params.relay: 'relay_1' or 'relay_2'"),
    ],
)  # fmt: skip
async def test_invalid_parameters(
    client: EkmControlClient, call: tuple[str, str, str, dict[str, Any]], detail: str
) -> None:
    with pytest.raises(EkmInvalidParametersError) as err:
        await client.send_command(DEMO_GATEWAY_MAC, *call)
    assert err.value.detail == detail
    assert str(err.value) == f"EKM rejected the request's parameters: {detail}"
    assert isinstance(err.value, EkmRequestError)
    assert_no_secret(err.value)


async def test_unknown_gateway_is_invalid(client: EkmControlClient) -> None:
    with pytest.raises(EkmInvalidParametersError, match="Unknown gateway 4016fa999999"):
        await client.set_relay("4016fa999999", DEMO_METER, 1, True)


async def test_command_key_and_token_errors(
    client: EkmControlClient, sim: CloudSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.url is not None
    sim.faults.command_token_required = True
    tokenless = EkmControlClient(session, DEMO_ACCOUNT_KEY, server=sim.url)
    with pytest.raises(EkmTokenRequiredError) as required:
        await tokenless.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
    assert str(required.value) == "This EKM server requires an API token"
    assert isinstance(required.value, EkmTokenError)
    assert isinstance(required.value, EkmAuthError)
    assert (await client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)).msg_id

    sim.fleet.revoke(DEMO_API_TOKEN)
    with pytest.raises(EkmTokenError) as revoked:
        await client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
    sim.fleet.restore(DEMO_API_TOKEN)
    sim.faults.command_token_required = False
    sim.fleet.revoke(DEMO_ACCOUNT_KEY)
    with pytest.raises(EkmForbiddenError) as bad_key:
        await tokenless.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
    assert not isinstance(bad_key.value, EkmTokenError)
    with pytest.raises(EkmTokenError) as bad_key_with_token:
        await client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
    assert_no_secret(required.value, revoked.value, bad_key.value, bad_key_with_token.value)


@pytest.mark.parametrize("endpoint", ["sendCommand", "trigger"])
async def test_injected_faults(
    client: EkmControlClient, sim: CloudSimulator, endpoint: str
) -> None:
    async def call() -> object:
        if endpoint == "sendCommand":
            return await client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
        return await client.list_triggers(DEMO_GATEWAY_MAC)

    sim.faults.only_endpoints = [endpoint]
    sim.faults.fail_next = [429, 503, 500]
    with pytest.raises(EkmRateLimitError) as limited:
        await call()
    assert limited.value.retry_after == 30
    with pytest.raises(EkmServerError) as unavailable:
        await call()
    assert unavailable.value.status == 503
    with pytest.raises(EkmServerError, match="HTTP 500"):
        await call()
    sim.faults.malformed = "not_json"
    with pytest.raises(EkmResponseError, match="something other than JSON"):
        await call()
    sim.faults.malformed = None
    sim.faults.latency_s = 2
    client._http._timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(EkmTimeoutError):
        await call()
    assert sim.requests[endpoint] == 5


async def test_unreachable_server(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = EkmControlClient(
        session, STANDIN_KEY, token=STANDIN_TOKEN, server=f"http://127.0.0.1:{port}"
    )
    for call in (
        client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True),
        client.get_trigger(UUID),
    ):
        with pytest.raises(EkmConnectionError) as err:
            await call
        assert str(err.value) == "Cannot reach the EKM server (ClientConnectorError)"
        assert_no_secret(err.value)


# --- Settings API: wire details from the stand-in --------------------------------------------


async def test_401_to_a_command_with_and_without_a_token(
    standin: StandIn, stand_client: EkmControlClient
) -> None:
    standin.answer({"error": "Unauthorized"}, 401)
    with pytest.raises(EkmTokenError) as with_token:
        await stand_client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
    assert type(with_token.value) is EkmTokenError
    stand_client.token = None
    standin.answer({"error": "Unauthorized"}, 401)
    with pytest.raises(EkmTokenRequiredError):
        await stand_client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
    standin.answer({"error": "Unauthorized"}, 403)
    with pytest.raises(EkmForbiddenError):
        await stand_client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (200, b"<html>ok</html>", EkmResponseError, "something other than JSON"),
        (200, b"", EkmResponseError, "something other than JSON"),
        (200, b"[1, 2]", EkmResponseError, "Settings API answer is not a JSON object"),
        (404, b"{}", EkmServerError, "EKM server answered HTTP 404"),
        (502, b"<html>bad gateway</html>", EkmServerError, "EKM server answered HTTP 502"),
        (400, b"", EkmInvalidParametersError, "^EKM rejected the request's parameters$"),
        (400, b'{"error": 7}', EkmInvalidParametersError, "parameters$"),
        (400, b"Bad relay\nmore", EkmInvalidParametersError, "parameters: Bad relay$"),
        (429, b"", EkmRateLimitError, "^Rate limited by the EKM server$"),
    ],
)
async def test_odd_command_answers(
    standin: StandIn,
    stand_client: EkmControlClient,
    status: int,
    body: bytes,
    error: type[EkmError],
    message: str,
) -> None:
    standin.answer(raw=body, status=status)
    with pytest.raises(error, match=message) as err:
        await stand_client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
    assert type(err.value) is error


async def test_invalid_parameters_text_is_sanitised(
    standin: StandIn, stand_client: EkmControlClient
) -> None:
    text = (
        f"Bad key {STANDIN_KEY} or token {STANDIN_TOKEN} for "
        f"https://api.ekmpush.com/sendCommand?key={STANDIN_KEY} see ?gateway=x\x07 " + "x" * 300
    )
    standin.answer({"error": text}, 400)
    with pytest.raises(EkmInvalidParametersError) as err:
        await stand_client.set_relay(DEMO_GATEWAY_MAC, DEMO_METER, 1, True)
    detail = err.value.detail
    assert detail.startswith("Bad key **REDACTED** or token **REDACTED** for … see …")
    assert len(detail) == 200
    assert detail.endswith("…")
    assert "ekmpush" not in detail
    assert_no_secret(err.value)


# --- Trigger API ---------------------------------------------------------------------------------


async def test_trigger_lifecycle(client: EkmControlClient, sim: CloudSimulator) -> None:
    seeded = demo_trigger_uuid(sim)
    [listed] = await client.list_triggers("40-16-FA-05-00-CD")
    assert listed["trigger_uuid"] == seeded
    assert listed["trigger_name"] == "Shed water heater at peak"
    assert await client.get_trigger(seeded.upper()) == listed

    definition = {"trigger_name": "Porch light", "condition": {"any": [1, {"x": None}]}}
    created = await client.create_trigger(GARAGE_MAC, definition)
    uuid = created["trigger_uuid"]
    assert created == {"trigger_uuid": uuid, "gateway": GARAGE_MAC, **definition}
    assert len(uuid) == 32
    assert sim.fleet.triggers[GARAGE_MAC][uuid] == created

    updated = await client.update_trigger(uuid, {"trigger_name": "Porch light off"})
    assert updated == {"trigger_uuid": uuid, "gateway": GARAGE_MAC,
                       "trigger_name": "Porch light off"}  # fmt: skip
    assert [t["trigger_name"] for t in await client.list_triggers(GARAGE_MAC)] == [
        "Shed water heater at peak",
        "Porch light off",
    ]
    assert await client.delete_trigger(uuid) == {"trigger_uuid": uuid, "deleted": True}
    with pytest.raises(EkmTriggerNotFoundError) as err:
        await client.get_trigger(uuid)
    assert str(err.value) == "EKM knows no trigger with that id"
    with pytest.raises(EkmTriggerNotFoundError):
        await client.delete_trigger(uuid)
    methods = [name for name, _ in sim.request_log]
    assert methods == ["trigger"] * 8
    assert sim.request_log[0] == ("trigger", {"gateway": DEMO_GATEWAY_MAC})
    assert sim.request_log[1] == ("trigger", {"trigger": seeded})


async def test_trigger_calls_need_a_token(
    sim: CloudSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.url is not None
    client = EkmControlClient(session, DEMO_ACCOUNT_KEY, server=sim.url)
    calls = (
        client.list_triggers(DEMO_GATEWAY_MAC),
        client.get_trigger(UUID),
        client.create_trigger(DEMO_GATEWAY_MAC, {"trigger_name": "x"}),
        client.update_trigger(UUID, {"trigger_name": "x"}),
        client.delete_trigger(UUID),
        client.check_token(),
        client.check_token(DEMO_GATEWAY_MAC),
    )
    for call in calls:
        with pytest.raises(EkmTokenRequiredError, match=r"^The EKM Trigger API requires an API"):
            await call
    assert client.requests == 0
    assert sim.requests == {}


async def test_trigger_token_and_key_errors(
    client: EkmControlClient, sim: CloudSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.url is not None
    seeded = demo_trigger_uuid(sim)
    reader = EkmControlClient(session, DEMO_ACCOUNT_KEY, token=READ_TOKEN, server=sim.url)
    assert await reader.get_trigger(seeded)
    errors: list[EkmError] = []
    for call in (
        reader.create_trigger(DEMO_GATEWAY_MAC, {"trigger_name": "x"}),
        reader.update_trigger(seeded, {"trigger_name": "x"}),
        reader.delete_trigger(seeded),
    ):
        with pytest.raises(EkmTokenError) as err:
            await call
        errors.append(err.value)
    gateway_key = EkmControlClient(session, DEMO_GATEWAY_KEY, token=DEMO_API_TOKEN, server=sim.url)
    assert len(await gateway_key.list_triggers(DEMO_GATEWAY_MAC)) == 1
    with pytest.raises(EkmTokenError) as other_gateway:
        await gateway_key.get_trigger(demo_trigger_uuid(sim, GARAGE_MAC))
    errors.append(other_gateway.value)
    sim.fleet.revoke(DEMO_API_TOKEN)
    with pytest.raises(EkmTokenError) as revoked:
        await client.list_triggers(DEMO_GATEWAY_MAC)
    errors.append(revoked.value)
    assert {str(e) for e in errors} == {"The EKM server rejected the key or API token"}
    assert_no_secret(*errors, client, reader)
    assert seeded in sim.fleet.triggers[DEMO_GATEWAY_MAC]


async def test_trigger_invalid_parameters(client: EkmControlClient) -> None:
    with pytest.raises(EkmInvalidParametersError) as err:
        await client.create_trigger(DEMO_GATEWAY_MAC, {"name": "no trigger_name"})
    assert err.value.detail == "trigger_name: a string"
    with pytest.raises(EkmInvalidParametersError, match="Unknown gateway 4016fa999999"):
        await client.list_triggers("4016fa999999")
    with pytest.raises(ValueError, match="32 hexadecimal digits"):
        await client.get_trigger("not-a-uuid")
    with pytest.raises(ValueError, match="12 hexadecimal digits"):
        await client.list_triggers("")


async def test_check_token(client: EkmControlClient, sim: CloudSimulator) -> None:
    await client.check_token()
    await client.check_token(DEMO_GATEWAY_MAC)
    assert sim.request_log[0] == ("trigger", {"trigger": CHECK_TOKEN_UUID})
    assert sim.request_log[1] == ("trigger", {"gateway": DEMO_GATEWAY_MAC})
    client.token = "not-the-token-0000"
    for gateway in (None, DEMO_GATEWAY_MAC):
        with pytest.raises(EkmTokenError):
            await client.check_token(gateway)
    sim.faults.fail_next = [503]
    with pytest.raises(EkmServerError):
        await client.check_token()


# --- Trigger API: wire details from the stand-in ---------------------------------------------


async def test_trigger_request_shape(standin: StandIn, stand_client: EkmControlClient) -> None:
    trigger = {"trigger_name": "t", "nested": {"a": [1]}}
    standin.answer({"triggers": []})
    standin.answer({"trigger_uuid": UUID, **trigger})
    standin.answer({"trigger_uuid": UUID, **trigger})
    standin.answer(raw=b"")

    assert await stand_client.list_triggers(DEMO_GATEWAY_MAC) == []
    await stand_client.create_trigger(DEMO_GATEWAY_MAC, trigger)
    await stand_client.update_trigger(UUID.upper(), trigger)
    assert await stand_client.delete_trigger(UUID) == {}

    assert [(s.method, s.path, s.query) for s in standin.seen] == [
        ("GET", "/api/trigger", {"key": STANDIN_KEY, "gateway": DEMO_GATEWAY_MAC}),
        ("POST", "/api/trigger", {"key": STANDIN_KEY, "gateway": DEMO_GATEWAY_MAC}),
        ("PUT", "/api/trigger", {"key": STANDIN_KEY, "trigger": UUID}),
        ("DELETE", "/api/trigger", {"key": STANDIN_KEY, "trigger": UUID}),
    ]
    assert {s.headers["Authorization"] for s in standin.seen} == {f"Bearer {STANDIN_TOKEN}"}
    assert [json.loads(s.body) if s.body else None for s in standin.seen] == [
        None, trigger, trigger, None,
    ]  # fmt: skip


OBJ = {"trigger_uuid": UUID, "trigger_name": "t"}
OTHER = {"trigger_uuid": "f" * 32, "trigger_name": "u"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"triggers": [OBJ]}, OBJ),
        ({"triggers": [OTHER, OBJ]}, OBJ),
        ({"triggers": [OTHER]}, OTHER),
        ({"trigger": OBJ}, OBJ),
        (OBJ, OBJ),
        ({"triggers": []}, EkmTriggerNotFoundError),
        ({"triggers": [OTHER, OTHER]}, EkmResponseError),
        ([OBJ], EkmResponseError),
        ("text", EkmResponseError),
    ],
)
async def test_get_trigger_answer_shapes(
    standin: StandIn, stand_client: EkmControlClient, answer: Any, expected: Any
) -> None:
    standin.answer(answer)
    await expect(stand_client.get_trigger(UUID), expected)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"triggers": [OBJ]}, OBJ),
        ({"trigger": OBJ}, OBJ),
        ({"ok": True}, {"ok": True}),
        ({"triggers": []}, {"triggers": []}),
        ([OBJ], EkmResponseError),
    ],
)
async def test_create_and_update_answer_shapes(
    standin: StandIn, stand_client: EkmControlClient, answer: Any, expected: Any
) -> None:
    standin.answer(answer)
    await expect(stand_client.create_trigger(DEMO_GATEWAY_MAC, {"trigger_name": "t"}), expected)
    standin.answer(answer)
    await expect(stand_client.update_trigger(UUID, {"trigger_name": "t"}), expected)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([OBJ, "odd", OTHER], [OBJ, OTHER]),
        ({"triggers": [OBJ, 3]}, [OBJ]),
        ({"trigger": OBJ}, EkmResponseError),
        ({"triggers": None}, EkmResponseError),
    ],
)
async def test_list_answer_shapes(
    standin: StandIn, stand_client: EkmControlClient, answer: Any, expected: Any
) -> None:
    standin.answer(answer)
    await expect(stand_client.list_triggers(DEMO_GATEWAY_MAC), expected)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"  \n", {}),
        (200, b"true", {}),
        (200, b'{"deleted": 1}', {"deleted": 1}),
        (204, b"", {}),
        (200, b"deleted", EkmResponseError),
        (404, b'{"error": "Invalid trigger id (trigger not found)"}', EkmTriggerNotFoundError),
        (403, b'{"error": "Unauthorized - invalid key or API token"}', EkmTokenError),
        (401, b"", EkmTokenError),
        (400, b'{"error": "bad id"}', EkmInvalidParametersError),
        (500, b"", EkmServerError),
    ],
)
async def test_delete_answers(
    standin: StandIn, stand_client: EkmControlClient, status: int, body: bytes, expected: Any
) -> None:
    standin.answer(raw=body, status=status)
    await expect(stand_client.delete_trigger(UUID), expected)


async def test_empty_body_is_an_error_except_on_delete(
    standin: StandIn, stand_client: EkmControlClient
) -> None:
    standin.answer(raw=b"")
    with pytest.raises(EkmResponseError, match="something other than JSON"):
        await stand_client.create_trigger(DEMO_GATEWAY_MAC, {"trigger_name": "t"})


async def test_check_token_against_the_stand_in(
    standin: StandIn, stand_client: EkmControlClient
) -> None:
    standin.answer({"error": "Invalid trigger id (trigger not found)"}, 404)
    standin.answer({"triggers": []})
    standin.answer({"error": "Unauthorized - invalid key or API token"}, 403)
    standin.answer({"error": "Unauthorized - invalid key or API token"}, 403)
    await stand_client.check_token()
    await stand_client.check_token(DEMO_GATEWAY_MAC)
    with pytest.raises(EkmTokenError) as by_lookup:
        await stand_client.check_token()
    with pytest.raises(EkmTokenError) as by_list:
        await stand_client.check_token(DEMO_GATEWAY_MAC)
    assert [s.query for s in standin.seen] == [
        {"key": STANDIN_KEY, "trigger": CHECK_TOKEN_UUID},
        {"key": STANDIN_KEY, "gateway": DEMO_GATEWAY_MAC},
    ] * 2
    assert_no_secret(by_lookup.value, by_list.value)
