"""``ekm rs485 ...`` in-process, against virtual Omnimeters on a loopback TCP port and a pty."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import json
from pathlib import Path

import pytest

from custom_components.ekm.pyekm import cli
from custom_components.ekm.pyekm.rs485 import protocol as p
from ekmsim.fleet import SimClock, SimMeter
from ekmsim.rs485 import VirtualBus, encode_frame

V4 = "000300002255"
V3 = "000010007076"


@pytest.fixture
async def vbus() -> AsyncIterator[VirtualBus]:
    clock = SimClock(start=1_790_000_000, manual=True)
    meters = [
        SimMeter(address=V4, protocol="v4", clock=clock),
        SimMeter(address=V3, protocol="v3", clock=clock),
    ]
    bus = VirtualBus(meters, baud=38400, turnaround=0.005)
    try:
        yield bus
    finally:
        await bus.close()


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def run(argv: list[str]) -> int:
    """cli.main runs its own event loop: give it a thread while ours serves the meters."""
    return await asyncio.to_thread(cli.main, argv)


def test_crc(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rs485", "crc", "52 31 02 30 30 31 31 28 29 03"]) == 0
    out = lines(capsys.readouterr().out)[0]
    assert out == {"length": 10, "crc": "13 16", "register": "0x9693"}
    assert cli.main(["rs485", "crc", p.password_frame().hex()]) == 0
    assert lines(capsys.readouterr().out)[0]["frame_crc_ok"] is True
    frame = encode_frame(SimMeter(address=V4), "a", {})
    assert cli.main(["rs485", "crc", frame.hex()]) == 0
    assert lines(capsys.readouterr().out)[0]["frame_crc_ok"] is True


def test_decode(capsys: pytest.CaptureFixture[str]) -> None:
    meter = SimMeter(address=V4, kwh_scale=2, clock=SimClock(start=1_790_000_000, manual=True))
    snap = dict(meter.snapshot())
    a = encode_frame(meter, "a", snap)
    assert cli.main(["rs485", "decode", a.hex(" ")]) == 0
    out = lines(capsys.readouterr().out)[0]
    assert out["address"] == V4
    assert out["source"] == "rs485"
    assert out["protocol"] == "v4"
    assert out["request"] == "A"
    assert out["model_name"] == "Omnimeter Pulse v.4"
    values = out["values"]
    assert isinstance(values, dict)
    assert values["kWh_Tot"] == snap["kWh_Tot"]
    b = encode_frame(meter, "b", snap)
    assert cli.main(["rs485", "decode", "--kwh-scale", "2", "--address", V4, b.hex()]) == 0
    out = lines(capsys.readouterr().out)[0]
    assert out["request"] == "B"
    assert isinstance(out["values"], dict)
    assert out["values"]["kWh_Tariff_1"] == snap["kWh_Tariff_1"]


def test_decode_errors(capsys: pytest.CaptureFixture[str]) -> None:
    frame = bytearray(encode_frame(SimMeter(address=V4), "a", {}))
    frame[30] ^= 1
    assert cli.main(["rs485", "decode", frame.hex()]) == 1
    err = json.loads(capsys.readouterr().err)
    assert err["error"] == "EkmCrcError"
    assert cli.main(["rs485", "decode", "--address", "1", bytes(frame).hex()]) == 1
    with pytest.raises(SystemExit, match="Not a hex string"):
        cli.main(["rs485", "decode", "xyz"])
    with pytest.raises(SystemExit, match="1 to 12 digits"):
        cli.main(["rs485", "decode", "--address", "abc", "00"])


async def test_read(vbus: VirtualBus, capsys: pytest.CaptureFixture[str]) -> None:
    port = f"socket://127.0.0.1:{await vbus.serve_tcp()}"
    argv = ["rs485", "read", "--port", port, "--address", V4, "--count", "3", "--b-every", "2"]
    assert await run(argv) == 0
    reads = lines(capsys.readouterr().out)
    assert len(reads) == 3
    for read in reads:
        assert read["address"] == V4
        assert isinstance(read["elapsed_ms"], float)
        assert read["port"] == port
        values = read["values"]
        assert isinstance(values, dict)
        assert "kWh_Tariff_1" in values
    assert vbus.requests == 3 + 2  # A each time, B on reads 1 and 3


async def test_read_v3_on_pty(
    vbus: VirtualBus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = await vbus.open_pty(tmp_path / "ttyUSB0")
    argv = ["rs485", "read", "--port", path, "--address", "10007076", "--interval", "0.01"]
    assert await run([*argv, "--count", "2"]) == 0
    reads = lines(capsys.readouterr().out)
    assert [r["protocol"] for r in reads] == ["v3", "v3"]


async def test_read_errors(vbus: VirtualBus, capsys: pytest.CaptureFixture[str]) -> None:
    port = f"socket://127.0.0.1:{await vbus.serve_tcp()}"
    argv = ["rs485", "read", "--port", port, "--address", "300009999", "--timeout", "0.2"]
    assert await run([*argv, "--retries", "0"]) == 1
    err = json.loads(capsys.readouterr().err)
    assert err["error"] == "EkmNoResponseError"
    with pytest.raises(SystemExit, match="retries"):
        await run([*argv, "--retries", "-1"])


async def test_relay(vbus: VirtualBus, capsys: pytest.CaptureFixture[str]) -> None:
    port = f"socket://127.0.0.1:{await vbus.serve_tcp()}"
    base = ["rs485", "relay", "--port", port, "--address", V4, "--relay", "2"]
    assert await run([*base, "--state", "on", "--duration", "60"]) == 0
    out = lines(capsys.readouterr().out)[0]
    assert out == {"address": V4, "relay": 2, "state": "on", "duration_s": 60, "ok": True}
    assert vbus.meter(V4).relays == [False, True]
    assert await run([*base, "--state", "off", "--password", "00000000"]) == 0
    assert vbus.meter(V4).relays == [False, False]
    capsys.readouterr()
    # Wrong password: a typed error on stderr, and the password is never printed.
    assert await run([*base, "--state", "on", "--password", "13572468"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.err)["error"] == "EkmPasswordError"
    assert "13572468" not in captured.out + captured.err
    # v3 meters have no relays.
    v3 = ["rs485", "relay", "--port", port, "--address", V3, "--relay", "1", "--state", "on"]
    assert await run(v3) == 1
    assert json.loads(capsys.readouterr().err)["error"] == "EkmUnsupportedError"
    with pytest.raises(SystemExit, match="duration_s"):
        await run([*base, "--state", "on", "--duration", "10000"])
    with pytest.raises(SystemExit, match="8 digits"):
        await run([*base, "--state", "on", "--password", "1234"])


async def test_relay_password_from_environment(
    vbus: VirtualBus, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    vbus.meter(V4).password = "24681357"
    monkeypatch.setenv("EKM_METER_PASSWORD", "24681357")
    port = f"socket://127.0.0.1:{await vbus.serve_tcp()}"
    argv = ["rs485", "relay", "--port", port, "--address", V4, "--relay", "1", "--state", "on"]
    assert await run(argv) == 0
    assert "24681357" not in capsys.readouterr().out
    assert vbus.meter(V4).relays == [True, False]


async def test_set_time(vbus: VirtualBus, capsys: pytest.CaptureFixture[str]) -> None:
    port = f"socket://127.0.0.1:{await vbus.serve_tcp()}"
    assert await run(["rs485", "set-time", "--port", port, "--address", V3]) == 0
    out = lines(capsys.readouterr().out)[0]
    assert out["address"] == V3
    assert out["ok"] is True
    command = vbus.commands[-1]
    assert command.code == "0060"
    assert command.accepted
    assert int(command.data[6:8]) == out["meter_weekday"]
