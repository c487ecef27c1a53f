"""ekmsim.rs485 seen from the wire: raw frames over loopback TCP, command line options."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from custom_components.ekm.pyekm.rs485 import protocol as p
from custom_components.ekm.pyekm.rs485.client import EkmBus
from ekmsim.fleet import Fleet, SimClock, SimMeter
from ekmsim.rs485 import VirtualBus, add_arguments, ekm_crc, encode_frame, start_from_args

V4 = "000300002255"
V3 = "000010007076"


@pytest.fixture
async def vbus() -> AsyncIterator[VirtualBus]:
    clock = SimClock(start=1_790_000_000, manual=True)
    meters = [
        SimMeter(address=V4, protocol="v4", clock=clock),
        SimMeter(address=V3, protocol="v3", clock=clock),
    ]
    bus = VirtualBus(meters, baud=96000, turnaround=0.001)
    try:
        yield bus
    finally:
        await bus.close()


class Host:
    """A bare TCP host: writes bytes, reads what comes back within a short window."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes, *, expect: int, wait: float = 0.3) -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        got = b""
        try:
            async with asyncio.timeout(wait):
                while len(got) < expect:
                    chunk = await self.reader.read(512)
                    if not chunk:
                        break
                    got += chunk
        except TimeoutError:
            pass
        return got

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def host(vbus: VirtualBus) -> AsyncIterator[Host]:
    port = await vbus.serve_tcp()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = Host(reader, writer)
    try:
        yield client
    finally:
        await client.close()


def test_own_crc_matches_the_reference_vectors() -> None:
    assert ekm_crc(bytes.fromhex("52 31 02 30 30 31 31 28 29 03")) == bytes.fromhex("13 16")
    assert ekm_crc(bytes.fromhex("50 31 02 28 30 30 30 30 30 30 30 30 29 03")) == b"\x32\x44"


def test_encoding_details() -> None:
    meter = SimMeter(address=V4, kwh_scale=0)
    frame = encode_frame(
        meter,
        "a",
        {"Power_Factor_Ln_1": 100, "Power_Factor_Ln_2": 183, "kWh_Tot": 123456789.4},
    )
    assert frame[159:163] == b" 100"
    assert frame[163:167] == b"C017"
    assert frame[16:24] == b"23456789"  # a register wider than its field rolls over
    assert frame[247:249] == b"00"
    with pytest.raises(KeyError):
        VirtualBus([meter]).meter(V3)


async def test_requests_and_noise(host: Host) -> None:
    # Noise and a malformed request before a good one: only the good one is answered.
    junk = b"\x7f\x00zz/?123!\r\n/?00030000225500x!\r\n"
    assert await host.send(junk, expect=1, wait=0.1) == b""
    answer = await host.send(p.request_frame(V4, p.Request.A), expect=255)
    p.validate_frame(answer, address=V4, request=p.Request.A)
    # A v4 ignores the 17-byte v3 request; a v3 ignores A and B.
    assert await host.send(p.request_frame(V4, p.Request.V3), expect=1, wait=0.1) == b""
    assert await host.send(p.request_frame(V3, p.Request.B), expect=1, wait=0.1) == b""
    # A request split over several writes is still one request.
    request = p.request_frame(V3, p.Request.V3)
    assert await host.send(request[:5], expect=1, wait=0.05) == b""
    answer = await host.send(request[5:], expect=255)
    p.validate_frame(answer, address=V3)


async def test_session_rules(host: Host, vbus: VirtualBus) -> None:
    login = p.password_frame()
    relay = p.relay_frame(1, True)
    # No meter selected: P1 and W1 go unanswered.
    assert await host.send(login, expect=1, wait=0.1) == b""
    await host.send(p.request_frame(V4, p.Request.A), expect=255)
    # W1 before the password is refused; a bad CRC is ignored.
    assert await host.send(relay, expect=1) == bytes([p.NAK])
    assert await host.send(login[:-1] + b"\x00", expect=1, wait=0.1) == b""
    assert await host.send(login, expect=1) == bytes([p.ACK])
    assert await host.send(relay[:-1] + b"\x00", expect=1, wait=0.1) == b""
    # Unknown codes and R1 table reads get no simulated action.
    assert await host.send(p.write_frame("00D2", "01" + "0" * 78), expect=1) == bytes([p.NAK])
    assert await host.send(p.read_table_frame("0011"), expect=1, wait=0.1) == b""
    # Change the password (0020), then the old one no longer works.
    assert await host.send(p.write_frame("0020", "11112222"), expect=1) == bytes([p.ACK])
    assert vbus.meter(V4).password == "11112222"
    await host.send(p.CLOSE, expect=1, wait=0.05)
    assert await host.send(relay, expect=1, wait=0.1) == b""  # closed: nobody selected
    await host.send(p.request_frame(V4, p.Request.A), expect=255)
    assert await host.send(login, expect=1) == bytes([p.NAK])
    assert [c.code for c in vbus.commands] == ["0081", "00D2", "0020"]


async def test_bad_command_values_are_refused(host: Host) -> None:
    await host.send(p.request_frame(V3, p.Request.V3), expect=255)
    assert await host.send(p.password_frame(), expect=1) == bytes([p.ACK])
    nak = bytes([p.NAK])
    assert await host.send(p.relay_frame(1, True), expect=1) == nak  # no relays on a v3
    assert await host.send(p.write_frame("00D0", "0123"), expect=1) == nak  # not a CT ratio
    assert await host.send(p.write_frame("0060", "26023005120000"), expect=1) == nak  # Feb 30
    assert await host.send(p.write_frame("0060", "26021306120000"), expect=1) == bytes([p.ACK])


async def test_input_overflow_is_bounded(host: Host) -> None:
    assert await host.send(b"/?" + b"1" * 5000, expect=1, wait=0.1) == b""
    answer = await host.send(b"\r\n" + p.request_frame(V4, p.Request.B), expect=255)
    p.validate_frame(answer, address=V4, request=p.Request.B)


async def test_wildcard_after_a_meter_swap(tmp_path: Path) -> None:
    """A cached B from another meter (wildcard address) is dropped, never merged."""
    clock = SimClock(start=1_790_000_000, manual=True)
    first = SimMeter(address=V4, protocol="v4", clock=clock)
    second = SimMeter(address="000300007788", protocol="v4", clock=clock)
    async with VirtualBus([first], baud=96000) as line:
        url = await line.open_pty(tmp_path / "tty")
        async with EkmBus(url, b_every=100, response_timeout=0.3) as client:
            assert (await client.read(p.WILDCARD)).address == V4
            line.meters = [second]
            reading = await client.read(p.WILDCARD)
            assert reading.address == second.address
            assert "CF_Ratio" not in reading.values
            assert client.line.software_parity in (True, False)
            assert line.pty_path == str(tmp_path / "tty")
            assert line.tcp_port is None


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_8n1_with_software_parity(vbus: VirtualBus, tmp_path: Path, transport: str) -> None:
    if transport == "pty":
        url = await vbus.open_pty(tmp_path / "tty")
    else:
        url = f"socket://127.0.0.1:{await vbus.serve_tcp()}"
    async with EkmBus(url, framing="8N1", response_timeout=0.3) as client:
        assert client.line.software_parity
        assert (await client.read(V4)).address == V4
        await client.set_relay(V4, 2, True)
    assert vbus.meter(V4).relays == [False, True]
    with pytest.raises(ValueError, match="framing"):
        EkmBus(url, framing="7N2")  # type: ignore[arg-type]


async def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    fleet = Fleet(clock=SimClock(start=1_790_000_000, manual=True))
    for address, protocol in ((V4, "v4"), (V3, "v3"), ("000300003344", "v5")):
        fleet.add_meter(SimMeter(address=address, protocol=protocol))
    assert await start_from_args(fleet, parser.parse_args([])) is None
    link = tmp_path / "ttyEKM"
    args = parser.parse_args(
        ["--rs485-pty", str(link), "--rs485-tcp", "0", "--rs485-meters", f"{V4},{V3}"]
    )
    bus = await start_from_args(fleet, args)
    assert bus is not None
    try:
        assert [m.address for m in bus.meters] == [V4, V3]
        out = capsys.readouterr().out
        assert f"rs485: pty {link}" in out
        assert f"socket://127.0.0.1:{bus.tcp_port}" in out
        async with EkmBus(str(link), response_timeout=0.3) as client:
            assert (await client.read(V3)).protocol == "v3"
    finally:
        await bus.close()
    auto = await start_from_args(fleet, parser.parse_args(["--rs485-pty", "auto"]))
    assert auto is not None
    try:
        assert len(auto.meters) == 3
        assert auto.pty_path is not None
        assert auto.pty_path.startswith("/dev/")
    finally:
        await auto.close()


async def test_half_duplex_line(host: Host, vbus: VirtualBus) -> None:
    """Host frames go out one after another; one sent over a meter's answer is lost."""
    # Two requests in one write: the second starts as the first leaves the wire.
    both = p.request_frame(V4, p.Request.A) + p.request_frame(V3, p.Request.V3)
    assert len(await host.send(both, expect=510)) == 510
    assert vbus.silences[-1] == pytest.approx(0.0, abs=1e-9)
    assert vbus.collisions == 0
    # Sent while the meter is still answering (26.6 ms at 96000 baud): nobody hears it.
    host.writer.write(p.request_frame(V4, p.Request.A))
    await asyncio.sleep(0.01)
    got = await host.send(p.request_frame(V4, p.Request.B), expect=510, wait=0.15)
    p.validate_frame(got, address=V4, request=p.Request.A)  # the first answer only
    assert vbus.collisions == 1
    # A meter that hears the line only 50 ms after its last byte.
    vbus.listen_delay = 0.05
    assert len(await host.send(p.request_frame(V4, p.Request.A), expect=255)) == 255
    assert await host.send(p.request_frame(V4, p.Request.B), expect=1, wait=0.03) == b""
    assert vbus.collisions == 2
    await asyncio.sleep(0.05)
    got = await host.send(p.request_frame(V4, p.Request.B), expect=255)
    p.validate_frame(got, address=V4, request=p.Request.B)
    assert vbus.silences[-1] >= 0.05
