"""The simulated EKM broker itself, spoken to with raw MQTT 3.1.1 packets over TLS."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
import json
from pathlib import Path
import ssl
import struct

import pytest

from custom_components.ekm.pyekm.mqtt import create_ssl_context
from ekmsim.fleet import DEMO_GATEWAY_KEY, DEMO_METER, Fleet
from ekmsim.mqtt import (
    MAX_PACKET,
    MqttProtocolError,
    MqttSimulator,
    add_arguments,
    encode_length,
    packet,
    read_packet,
    start_from_args,
    start_service,
    summarize,
    topic_matches,
)


@pytest.fixture
async def sim(fleet: Fleet) -> AsyncIterator[MqttSimulator]:
    broker = MqttSimulator(fleet)
    await broker.start(port=0)
    try:
        yield broker
    finally:
        await broker.stop()


def text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(
    username: str | None, *, name: str = "MQTT", level: int = 4, password: bool = False
) -> bytes:
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password else 0) | 0x04
    body = text(name) + bytes((level, flags)) + struct.pack("!H", 0) + text("raw-client")
    body += text("will/topic") + text("bye")
    if username is not None:
        body += text(username)
    if password:
        body += text("")
    return packet(0x10, body)


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> tuple[int, bytes]:
        async with asyncio.timeout(30):
            return await read_packet(self.reader)

    async def closed(self) -> bool:
        async with asyncio.timeout(30):
            return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


type Opener = Callable[[], Awaitable[RawClient]]


@pytest.fixture
async def connect(sim: MqttSimulator) -> AsyncIterator[Opener]:
    """Open raw TLS connections to the broker (closed after the test)."""
    loop = asyncio.get_running_loop()
    context = await loop.run_in_executor(None, create_ssl_context, sim.ca_file)
    clients: list[RawClient] = []

    async def open_client() -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port, ssl=context)
        clients.append(RawClient(reader, writer))
        return clients[-1]

    yield open_client
    for client in clients:
        await client.close()


async def test_connack_codes(connect: Opener, sim: MqttSimulator) -> None:
    for username, kwargs, code in (
        (DEMO_GATEWAY_KEY, {"password": True}, 0),
        (None, {}, 4),
        ("unknown-gateway-key", {}, 5),
        (DEMO_GATEWAY_KEY, {"level": 5}, 1),
        (DEMO_GATEWAY_KEY, {"name": "MQIsdp", "level": 3}, 0),
    ):
        client = await connect()
        await client.send(connect_packet(username, **kwargs))
        assert await client.receive() == (0x20, bytes((0, code)))
        if code:
            assert await client.closed()
    assert sim.broker.stats.refused == 3


async def test_session(connect: Opener, sim: MqttSimulator) -> None:
    client = await connect()
    await client.send(connect_packet(DEMO_GATEWAY_KEY))
    await client.receive()
    topic = f"realtime/{DEMO_GATEWAY_KEY}"
    await client.send(
        packet(0x82, struct.pack("!H", 7) + text(topic) + b"\x00" + text("realtime/#") + b"\x00")
    )
    assert await client.receive() == (0x90, struct.pack("!H", 7) + b"\x00\x80")
    await client.send(b"\xc0\x00")
    assert await client.receive() == (0xD0, b"")
    # A client's own QoS 1 publish: PUBACK, then delivery at QoS 0.
    await client.send(packet(0x32, text(topic) + struct.pack("!H", 9) + b"{}"))
    assert await client.receive() == (0x40, struct.pack("!H", 9))
    assert await client.receive() == (0x30, text(topic) + b"{}")
    assert sim.broker.session_count == 1
    await client.send(packet(0xA2, struct.pack("!H", 8) + text(topic)))
    assert await client.receive() == (0xB0, struct.pack("!H", 8))
    assert await sim.publish_raw(DEMO_GATEWAY_KEY, b"{}") == 0
    await client.send(b"\xe0\x00")
    assert await client.closed()


@pytest.mark.parametrize(
    ("connected", "data"),
    [
        (False, packet(0x82, text("x") + b"\x00")),  # SUBSCRIBE before CONNECT
        (True, packet(0x34, text("t") + b"\x00\x01")),  # QoS 2 PUBLISH
        (True, b"\xf0\x00"),  # an unknown packet type
        (True, packet(0x82, struct.pack("!H", 1))),  # SUBSCRIBE without topics
        (True, packet(0x82, struct.pack("!H", 1) + b"\x00\x02\xff\xfe\x00")),  # bad UTF-8
        (True, packet(0x82, struct.pack("!H", 1) + b"\x00\x09ab")),  # truncated
    ],
)
async def test_protocol_errors_close_the_connection(
    connect: Opener, connected: bool, data: bytes
) -> None:
    client = await connect()
    if connected:
        await client.send(connect_packet(DEMO_GATEWAY_KEY))
        await client.receive()
    await client.send(data)
    assert await client.closed()


async def test_read_packet_limits() -> None:
    for length in (0, 127, 128, 16383, 16384, 2_097_151, MAX_PACKET):
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x30" + encode_length(length) + b"x" * min(length, 10))
        reader.feed_eof()
        if length <= 10:
            assert await read_packet(reader) == (0x30, b"x" * length)
    for bad in (b"\x30\xff\xff\xff\xff\x01", b"\x30" + encode_length(MAX_PACKET + 1)):
        reader = asyncio.StreamReader()
        reader.feed_data(bad)
        reader.feed_eof()
        with pytest.raises(MqttProtocolError):
            await read_packet(reader)


def test_topic_matches() -> None:
    assert topic_matches("a/b", "a/b")
    assert topic_matches("a/+", "a/b")
    assert topic_matches("a/#", "a/b/c")
    assert topic_matches("#", "a")
    assert not topic_matches("a/+", "a/b/c")
    assert not topic_matches("a/b", "a/c")
    assert not topic_matches("a/b/c", "a/b")


def test_summarize(fleet: Fleet) -> None:
    fleet.advance(600)
    reads = list(fleet.history(DEMO_METER))[-10:]
    start = int(reads[0]["Time_Stamp_UTC_ms"])
    out = summarize(fleet.meters[DEMO_METER], start, start + 600_000)
    assert out is not None
    assert out["Count"] == 10
    assert float(out["kWh_Tot_Diff"]) >= 0  # type: ignore[arg-type]
    assert int(out["Pulse_Cnt_1_Last"]) >= int(out["Pulse_Cnt_1_First"])  # type: ignore[call-overload]
    assert "RMS_Watts_Tot_StdDev" in out
    assert out["kWh_Tot_First"] == f"{reads[0]['kWh_Tot']:.2f}"  # the Realtime value
    assert summarize(fleet.meters[DEMO_METER], 0, 900_000) is None  # before its first report


async def test_value_styles(fleet: Fleet, sim: MqttSimulator) -> None:
    meter = fleet.meters[DEMO_METER]
    read = fleet.latest(DEMO_METER)
    assert read is not None
    for style, kind in (("numbers", float), ("strings", str), ("mixed", str)):
        sim.value_style = style  # type: ignore[assignment]
        body = json.loads(sim.realtime_payload([(meter, read)]))[f"meter_{DEMO_METER}"]
        assert isinstance(body["kWh_Tot"], kind)
        assert isinstance(body["Time_Stamp_UTC_ms"], int)
    assert isinstance(body["RMS_Watts_Tot"], int)  # mixed: power as a number


async def test_not_started(fleet: Fleet) -> None:
    sim = MqttSimulator(fleet)
    with pytest.raises(RuntimeError):
        _ = sim.url
    with pytest.raises(RuntimeError):
        _ = sim.ca_file
    await sim.stop()


async def test_command_line(fleet: Fleet, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert await start_from_args(fleet, parser.parse_args([])) is None
    args = parser.parse_args(
        ["--mqtt-port", "0", "--mqtt-cert-dir", str(tmp_path), "--mqtt-values", "numbers"]
    )
    sim = await start_from_args(fleet, args)
    assert sim is not None
    try:
        assert sim.url.startswith("mqtts://127.0.0.1:")
        assert sim.ca_file == tmp_path / "ca.pem"
        assert sim.value_style == "numbers"
        assert sim.port > 0
        await sim.start_broker()  # already listening: no-op
    finally:
        await sim.stop()
    assert (tmp_path / "ca.pem").exists()  # a given directory is kept


async def test_ekmsim_service_hook(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    add_arguments(parser)
    assert await start_service(fleet, parser.parse_args([])) is None
    stop = await start_service(fleet, parser.parse_args(["--mqtt-port", "0"]))
    assert stop is not None
    await stop()
    out = capsys.readouterr().out
    assert "mqtt: mqtts://127.0.0.1:" in out
    assert "ekm push" in out
