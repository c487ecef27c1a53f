"""EkmBus against virtual Omnimeters over a real pty and a real loopback TCP socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
import statistics

import pytest

from custom_components.ekm.pyekm.errors import (
    EkmCommandError,
    EkmConnectionError,
    EkmCrcError,
    EkmNoResponseError,
    EkmPasswordError,
    EkmProtocolError,
    EkmUnsupportedError,
)
from custom_components.ekm.pyekm.models import Source
from custom_components.ekm.pyekm.rs485 import protocol as p
from custom_components.ekm.pyekm.rs485.client import EkmBus
from custom_components.ekm.pyekm.rs485.transport import INTER_FRAME_GAP, SerialLine
from ekmsim.fleet import SimClock, SimMeter
from ekmsim.rs485 import Faults, VirtualBus

V4 = "000300002255"
V3 = "000010007076"
V5 = "000350003229"
PASSWORD = "00000000"
NOISY = (
    "RMS_Volts", "Amps", "RMS_Watts_Ln", "RMS_Watts_Tot", "Reactive_Pwr", "Cos_Theta",
    "Power_Factor", "Line_Freq", "State_Watts_Dir",
)  # fmt: skip
FAST = {"response_timeout": 0.4, "frame_timeout": 1.2, "ack_timeout": 0.4, "gap": 0.01}


@pytest.fixture
def clock() -> SimClock:
    return SimClock(start=1_790_000_000, manual=True)


@pytest.fixture
def meters(clock: SimClock) -> list[SimMeter]:
    return [
        SimMeter(address=V4, protocol="v4", clock=clock, kwh_scale=2),
        SimMeter(address=V3, protocol="v3", clock=clock, initial_kwh=8000.0),
        SimMeter(address=V5, protocol="v5", clock=clock, kwh_scale=1, relays=[True, False]),
    ]


@pytest.fixture
async def vbus(meters: list[SimMeter]) -> AsyncIterator[VirtualBus]:
    bus = VirtualBus(meters, baud=38400, turnaround=0.005)
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture(params=["pty", "tcp"])
async def port(request: pytest.FixtureRequest, vbus: VirtualBus, tmp_path: Path) -> str:
    if request.param == "pty":
        return await vbus.open_pty(tmp_path / "ttyEKM0")
    return f"socket://127.0.0.1:{await vbus.serve_tcp('127.0.0.1', 0)}"


@pytest.fixture
async def bus(port: str) -> AsyncIterator[EkmBus]:
    client = EkmBus(port, **FAST)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.close()


def meter(vbus: VirtualBus, address: str) -> SimMeter:
    return vbus.meter(address)


# --- reads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [V4, V3, V5])
@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_read_each_model_at_9600(
    meters: list[SimMeter], tmp_path: Path, address: str, transport: str
) -> None:
    """A real-speed line (9600 baud, 10 bits per character) for every model and transport."""
    async with VirtualBus(meters) as line:
        if transport == "pty":
            url = await line.open_pty(tmp_path / "ttyUSB0")
        else:
            url = f"socket://127.0.0.1:{await line.serve_tcp()}"
        async with EkmBus(url) as client:
            reading = await client.read(address)
    sim = line.meter(address)
    expected = sim.snapshot()
    assert reading.address == address
    assert reading.source is Source.RS485
    assert reading.protocol == ("v3" if sim.protocol == "v3" else "v4")
    assert reading.values["Model"] == sim.model
    assert reading.values["Firmware"] == sim.firmware
    for name in ("kWh_Tot", "Rev_kWh_Tot", "kWh_Tariff_1", "CT_Ratio", "Meter_Time"):
        assert reading.values[name] == expected[name], name
    assert reading.values["Good"] == 1
    assert "Calc_Fwd_kWh_Tot" in reading.values
    if sim.protocol != "v3":
        assert reading.values["kWh_Scale"] == sim.kwh_scale
        assert reading.values["State_Out"] == expected["State_Out"]
        assert "Net_Calc_Watts_Tot" in reading.values
        assert reading.values["CF_Ratio"] == sim.cf_ratio


async def test_read_values_match_snapshot(bus: EkmBus, vbus: VirtualBus) -> None:
    for address in (V4, V3, V5):
        reading = await bus.read(address)
        snap = meter(vbus, address).snapshot()
        for name, expected in snap.items():
            if (name == "kWh_Scale" and address == V3) or name.startswith(NOISY):
                continue  # instantaneous values carry noise between two snapshots
            assert name in reading.values, name
            if isinstance(expected, float):
                assert reading.values[name] == pytest.approx(expected, abs=0.051), name
            else:
                assert reading.values[name] == expected, name
    assert bus.protocol(V3) == "v3"
    assert bus.protocol(V4) == "v4"
    assert bus.protocol(V5) == "v4"
    assert bus.protocol("000300009999") is None


async def test_b_is_read_less_often_than_a(port: str, vbus: VirtualBus) -> None:
    async with EkmBus(port, b_every=3, **FAST) as client:  # type: ignore[arg-type]
        readings = [await client.read(V4) for _ in range(7)]
        assert client.stats.a_frames == 7
        assert client.stats.b_frames == 3  # reads 1, 4 and 7
    assert all("kWh_Tariff_1" in r.values and "CF_Ratio" in r.values for r in readings)
    assert client.stats.sessions == 7
    assert client.connected is False


async def test_b_failure_uses_cache_or_goes_without(bus: EkmBus, vbus: VirtualBus) -> None:
    vbus.faults.target = "b"
    vbus.faults.silence = 1.0
    first = await bus.read(V4)  # no B cache yet: the reading has no B fields
    assert "kWh_Tot" in first.values
    assert "CF_Ratio" not in first.values
    vbus.faults.clear()
    bus._b_every = 1  # read B every time from now on
    second = await bus.read(V4)
    assert second.values["CF_Ratio"] == 800
    vbus.faults.target = "b"
    vbus.faults.crc = 1.0
    third = await bus.read(V4)  # B fails: the cached B fields are merged
    assert third.values["CF_Ratio"] == 800
    assert bus.stats.bad_frames >= 1


async def test_wildcard_reads_the_only_meter(clock: SimClock, tmp_path: Path) -> None:
    alone = SimMeter(address=V5, protocol="v5", clock=clock)
    async with VirtualBus([alone], baud=38400) as line:
        url = await line.open_pty(tmp_path / "tty")
        async with EkmBus(url, **FAST) as client:  # type: ignore[arg-type]
            reading = await client.read(p.WILDCARD)
            again = await client.read(999999999999)
    assert reading.address == V5
    assert again.address == V5
    assert "CF_Ratio" in again.values


async def test_wildcard_with_two_meters_is_garbled(clock: SimClock, tmp_path: Path) -> None:
    """Two v4 meters answer 999999999999 together (F1845): never a reading."""
    two = [
        SimMeter(address=V4, protocol="v4", clock=clock),
        SimMeter(address=V5, protocol="v5", clock=clock),
    ]
    async with VirtualBus(two, baud=38400) as line:
        url = await line.open_pty(tmp_path / "tty")
        async with EkmBus(url, **FAST) as client:  # type: ignore[arg-type]
            with pytest.raises(EkmProtocolError):
                await client.read(p.WILDCARD)
            assert (await client.read(V5)).address == V5


async def test_two_meters_concurrently(bus: EkmBus) -> None:
    """One lock per bus: concurrent reads of two meters never interleave on the wire."""
    results = await asyncio.gather(*(bus.read(a) for a in (V4, V3, V5, V4, V3)))
    assert [r.address for r in results] == [V4, V3, V5, V4, V3]
    assert bus.stats.bad_frames == 0
    assert bus.stats.timeouts == 0


async def test_detection_fallback_and_hints(clock: SimClock, tmp_path: Path) -> None:
    """A v4 below 300000000 is first asked as a v3 (MT-QT's heuristic), then found."""
    low_v4 = SimMeter(address="000000123456", protocol="v4", clock=clock)
    high_v3 = SimMeter(address="000400001111", protocol="v3", clock=clock)
    async with VirtualBus([low_v4, high_v3], baud=38400) as line:
        url = await line.open_pty(tmp_path / "tty")
        async with EkmBus(url, **FAST) as client:  # type: ignore[arg-type]
            assert await client.detect(low_v4.address) == "v4"
            assert await client.detect(high_v3.address) == "v3"
            assert client.stats.timeouts == 2
            assert (await client.read(high_v3.address)).protocol == "v3"
        hinted = EkmBus(url, protocols={high_v3.address: "v3", low_v4.address: "v5"}, **FAST)  # type: ignore[arg-type]
        async with hinted:
            assert (await hinted.read(low_v4.address)).protocol == "v4"
            assert (await hinted.read(high_v3.address)).protocol == "v3"
            assert hinted.stats.timeouts == 0
    with pytest.raises(ValueError, match="protocol"):
        EkmBus(url, protocols={V4: "v6"})


async def test_silent_meter(bus: EkmBus, vbus: VirtualBus) -> None:
    meter(vbus, V4).responsive = False
    with pytest.raises(EkmNoResponseError):
        await bus.read(V4)
    with pytest.raises(EkmNoResponseError):
        await bus.read("000300009999")  # nobody has that address
    meter(vbus, V4).responsive = True
    assert (await bus.read(V4)).address == V4


# --- writes ---------------------------------------------------------------------------------------


async def test_relays_seen_in_state_out(bus: EkmBus, vbus: VirtualBus, clock: SimClock) -> None:
    await bus.set_relay(V4, 1, True)
    assert (await bus.read(V4)).values["State_Out"] == 3
    await bus.set_relay(V4, 2, True, password=PASSWORD)
    assert (await bus.read(V4)).values["State_Out"] == 4
    await bus.set_relay(V4, 1, False)
    assert (await bus.read(V4)).values["State_Out"] == 2
    await bus.set_relay(V4, 2, False, duration_s=30)  # off for 30 s, then back on
    assert (await bus.read(V4)).values["State_Out"] == 1
    clock.advance(31)
    assert (await bus.read(V4)).values["State_Out"] == 2
    codes = [c.code for c in vbus.commands]
    assert codes == ["0081", "0082", "0081", "0082"]
    assert vbus.commands[-1].data == "00030"
    assert all(c.accepted for c in vbus.commands)


async def test_set_time(bus: EkmBus, vbus: VirtualBus) -> None:
    sunday = datetime(2026, 3, 1, 8, 30, 15)  # a Sunday: weekday 01 on the wire
    await bus.set_time(V4, sunday)
    assert vbus.commands[-1].data == "26030101083015"
    reading = await bus.read(V4)
    assert reading.values["Meter_Time"] == "26030101083015"
    await bus.set_time(V3)  # now, local time
    assert vbus.commands[-1].code == "0060"
    assert vbus.commands[-1].accepted


async def test_zero_resettable(bus: EkmBus) -> None:
    assert ((await bus.read(V4)).number("kWh_Rst") or 0) > 0
    await bus.zero_resettable_kwh(V4)
    values = (await bus.read(V4)).values
    assert values["kWh_Rst"] == 0
    assert values["Rev_kWh_Rst"] == 0


async def test_settings_are_written_and_read_back(bus: EkmBus, vbus: VirtualBus) -> None:
    before = await bus.read(V5)
    assert (before.number("RMS_Watts_Max_Demand") or 0) > 0
    await bus.set_ct_ratio(V5, 400)
    await bus.set_pulse_input_ratio(V5, 2, 25)
    await bus.set_pulse_output_ratio(V5, 1600)
    await bus.set_max_demand_period(V5, 3)
    await bus.set_max_demand_auto_reset(V5, 4)
    await bus.reset_max_demand(V5)
    after = (await bus.read(V5)).values  # B was invalidated: read again
    assert after["CT_Ratio"] == 400
    assert after["Pulse_Ratio_2"] == 25
    assert after["CF_Ratio"] == 1600
    assert after["Max_Demand_Period"] == 3
    assert after["Max_Demand_Rst"] == 4
    assert after["RMS_Watts_Max_Demand"] == 0
    sim = meter(vbus, V5)
    assert (sim.ct_ratio, sim.cf_ratio, sim.max_demand_period) == (400, 1600, 3)
    # v3 takes CT ratio, max-demand period and reset.
    await bus.set_ct_ratio(V3, 800)
    await bus.set_max_demand_period(V3, 2)
    await bus.reset_max_demand(V3)
    v3 = (await bus.read(V3)).values
    assert (v3["CT_Ratio"], v3["Max_Demand_Period"]) == (800, 2)


async def test_wrong_password(bus: EkmBus, vbus: VirtualBus) -> None:
    meter(vbus, V4).password = "12345678"
    with pytest.raises(EkmPasswordError) as err:
        await bus.set_relay(V4, 1, True)
    assert PASSWORD not in str(err.value)
    vbus.faults.nak = False  # a meter that stays silent instead of NAK
    with pytest.raises(EkmPasswordError):
        await bus.set_relay(V4, 1, True, password="87654321")
    await bus.set_relay(V4, 1, True, password="12345678")
    assert meter(vbus, V4).relays[0] is True
    assert [c.accepted for c in vbus.commands] == [True]


async def test_refused_command(bus: EkmBus, vbus: VirtualBus) -> None:
    vbus.faults.once("refuse")
    with pytest.raises(EkmCommandError, match="0040"):
        await bus.reset_max_demand(V4)
    vbus.faults.nak = False
    vbus.faults.once("refuse")
    with pytest.raises(EkmCommandError):
        await bus.set_ct_ratio(V4, 100)
    await bus.set_ct_ratio(V4, 100)


async def test_v3_refuses_v4_only_commands(bus: EkmBus, vbus: VirtualBus) -> None:
    with pytest.raises(EkmUnsupportedError, match="v3"):
        await bus.set_relay(V3, 1, True)  # detected during the session
    with pytest.raises(EkmUnsupportedError):
        await bus.zero_resettable_kwh(V3)  # known: refused before any I/O
    with pytest.raises(EkmUnsupportedError):
        await bus.set_pulse_output_ratio(V3, 800)
    with pytest.raises(EkmUnsupportedError):
        await bus.set_max_demand_auto_reset(V3, 1)
    with pytest.raises(EkmUnsupportedError):
        await bus.set_pulse_input_ratio(V3, 1, 10)
    assert vbus.commands == []


async def test_write_argument_validation(bus: EkmBus) -> None:
    with pytest.raises(ValueError, match="duration_s"):
        await bus.set_relay(V4, 1, True, duration_s=10_000)
    with pytest.raises(ValueError, match="8 digits"):
        await bus.set_relay(V4, 1, True, password="1234")
    with pytest.raises(ValueError, match="CT ratio"):
        await bus.set_ct_ratio(V4, 123)
    with pytest.raises(ValueError, match="1 to 12 digits"):
        await bus.read("meter-1")
    assert bus.stats.sessions == 0


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="8 digits"):
        EkmBus("/dev/null", password="secret")
    with pytest.raises(ValueError, match="b_every"):
        EkmBus("/dev/null", b_every=0)
    with pytest.raises(ValueError, match="retries"):
        EkmBus("/dev/null", retries=-1)
    assert repr(EkmBus("socket://user:pw@127.0.0.1:1")) == (
        "<EkmBus socket://**REDACTED**@127.0.0.1:1>"
    )


# --- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["crc", "truncate", "silence", "garbage", "collision"])
async def test_one_fault_is_retried(bus: EkmBus, vbus: VirtualBus, kind: str) -> None:
    await bus.read(V4)
    vbus.faults.once(kind)
    reading = await bus.read(V4)
    assert reading.address == V4
    if kind != "garbage":
        assert bus.stats.retries >= 1


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("crc", EkmCrcError),
        ("truncate", EkmProtocolError),
        ("silence", EkmNoResponseError),
        ("collision", EkmProtocolError),
    ],
)
async def test_persistent_fault_is_a_typed_error(
    port: str, vbus: VirtualBus, kind: str, error: type[Exception]
) -> None:
    setattr(vbus.faults, kind, 1.0)
    hints = {V4: "v4", V3: "v3"}
    async with EkmBus(port, retries=1, protocols=hints, **FAST) as client:  # type: ignore[arg-type]
        with pytest.raises(error):
            await client.read(V4)
        with pytest.raises(error):
            await client.read(V3)
        vbus.faults.clear()
        assert (await client.read(V4)).address == V4
        assert client.stats.retries == 2
        assert sum(client.stats.errors.values()) == 4


async def test_detection_reports_garbage_over_silence(bus: EkmBus, vbus: VirtualBus) -> None:
    """A v4 never answers a v3 request; a garbled A answer is the error worth reporting."""
    vbus.faults.crc = 1.0
    with pytest.raises(EkmCrcError):
        await bus.read(V4)
    assert bus.stats.timeouts >= 1


async def test_garbage_and_echo_are_tolerated(bus: EkmBus, vbus: VirtualBus) -> None:
    vbus.faults.garbage = 1.0
    vbus.faults.echo = True
    for address in (V4, V3, V5):
        assert (await bus.read(address)).address == address
    await bus.set_relay(V4, 2, True)
    await bus.set_time(V3, datetime(2026, 1, 3, 1, 2, 3))
    assert (await bus.read(V4)).values["State_Out"] == 2
    assert bus.stats.retries == 0


async def test_random_faults_never_give_a_bad_reading(bus: EkmBus, vbus: VirtualBus) -> None:
    vbus.faults = Faults(crc=0.15, truncate=0.1, silence=0.1, garbage=0.3, echo=True, seed=7)
    ok = 0
    for _ in range(12):
        try:
            reading = await bus.read(V4)
        except EkmProtocolError, EkmNoResponseError:
            continue
        snap = meter(vbus, V4).snapshot()
        assert reading.values["kWh_Tot"] == snap["kWh_Tot"]
        assert reading.values["Meter_Time"] == snap["Meter_Time"]
        ok += 1
    assert ok >= 1


def test_fault_knobs() -> None:
    faults = Faults(seed=1)
    with pytest.raises(ValueError, match="Unknown fault"):
        faults.once("fire")
    faults.once("crc", 2)
    assert faults.hit("crc") and faults.hit("crc")
    assert not faults.hit("crc")
    faults.crc = 1.0
    assert faults.hit("crc")
    noise = faults.noise(50)
    assert len(noise) == 50
    assert not set(noise) & {p.STX, p.ACK, p.NAK}


# --- the port going away --------------------------------------------------------------------------


async def test_port_disappears_and_comes_back(bus: EkmBus, vbus: VirtualBus) -> None:
    assert (await bus.read(V4)).address == V4
    await vbus.unplug()
    with pytest.raises(EkmConnectionError):
        await bus.read(V4)
    with pytest.raises(EkmConnectionError):
        await bus.read(V3)
    assert not bus.connected
    await vbus.replug()
    assert (await bus.read(V4)).address == V4
    assert (await bus.read(V3)).address == V3
    assert bus.stats.reconnects >= 1
    assert bus.connected


async def test_port_lost_mid_session(bus: EkmBus, vbus: VirtualBus) -> None:
    """The port vanishes between two sessions: the next one reopens it (same pty link)."""
    await bus.read(V4)
    await vbus.unplug()
    await vbus.replug()
    assert (await bus.read(V4)).address == V4
    assert (await bus.read(V5)).address == V5


async def test_reopen_same_pty_many_times(vbus: VirtualBus, tmp_path: Path) -> None:
    url = await vbus.open_pty(tmp_path / "tty")
    for _ in range(3):
        async with EkmBus(url, **FAST) as client:  # type: ignore[arg-type]
            assert (await client.read(V3)).address == V3


async def test_missing_port(tmp_path: Path) -> None:
    client = EkmBus(str(tmp_path / "no-such-tty"), **FAST)  # type: ignore[arg-type]
    with pytest.raises(EkmConnectionError, match="Cannot open"):
        await client.read(V4)
    with pytest.raises(EkmConnectionError):
        await client.connect()
    await client.close()


async def test_refused_tcp_port(unused_tcp_port: int) -> None:
    client = EkmBus(f"socket://127.0.0.1:{unused_tcp_port}", **FAST)  # type: ignore[arg-type]
    with pytest.raises(EkmConnectionError, match="Cannot open"):
        await client.read(V4)


async def test_serial_line_directly(vbus: VirtualBus, tmp_path: Path) -> None:
    line = SerialLine(await vbus.open_pty(tmp_path / "tty"))
    assert line.safe_url.endswith("tty")
    assert not line.is_open
    with pytest.raises(EkmConnectionError, match="not open"):
        await line.write(b"x")
    await line.open()
    await line.open()  # already open: nothing to do
    await line.write(p.request_frame(V4, p.Request.A))
    frame = await line.read_frame(first_byte_timeout=0.5, frame_timeout=1.0)
    p.validate_frame(frame, address=V4, request=p.Request.A)
    await line.write(p.CLOSE)
    assert await line.read_ack(wait=0.05) is None
    await line.wait_quiet(0.01)
    assert line.bytes_sent == 19 + 5
    assert line.bytes_received >= 255
    await line.close()
    await line.close()


# --- line timing: the inter-frame gap -------------------------------------------------------------


async def test_every_frame_we_send_follows_the_gap(bus: EkmBus, vbus: VirtualBus) -> None:
    """The meters see ``gap`` of silence before each of our frames, counted from the line."""
    gap = FAST["gap"]
    await bus.read(V4)  # A, B, close
    await bus.read(V3)  # request, close
    await bus.set_time(V5)  # A, P1, W1, close
    await asyncio.sleep(0.05)  # the last close reaches the meter
    silences = sorted(list(vbus.silences)[1:])  # the first frame follows nothing
    assert len(silences) == 8
    assert vbus.collisions == 0
    assert statistics.median(silences) >= gap
    # The simulator stamps a frame when the shared event loop reads it: under load that
    # can be late, making the next frame's silence look a little short.
    assert silences[0] >= gap / 2
    assert bus.stats.retries == bus.stats.timeouts == 0


async def test_a_meter_that_listens_late(port: str, vbus: VirtualBus) -> None:
    """A meter deaf for 20 ms after its own bytes: a 30 ms gap reaches it; no gap loses frames."""
    vbus.listen_delay = 0.02
    slow_ears = {**FAST, "gap": 0.03}
    async with EkmBus(port, b_every=1, **slow_ears) as client:  # type: ignore[arg-type]
        for _ in range(2):
            reading = await client.read(V4)
            assert reading.values["CF_Ratio"] == 800
        assert client.stats.timeouts == 0
    assert vbus.collisions == 0
    no_gap = {**FAST, "gap": 0.0}
    async with EkmBus(port, **no_gap) as client:  # type: ignore[arg-type]
        reading = await client.read(V4)  # B right after A is lost, timed out, retried
        assert client.stats.timeouts == 1
        assert client.stats.retries == 1
    assert reading.values["CF_Ratio"] == 800  # the retry, after the silence, got B
    assert vbus.collisions >= 1  # B (and the close right after B's answer)


async def test_we_wait_while_the_line_is_busy(vbus: VirtualBus, tmp_path: Path) -> None:
    """Bytes still arriving push the gap on (a late answer is never talked over), up to a limit."""
    vbus.baud = 9600  # a 265 ms answer: plenty of time to look at the line mid-answer
    vbus.chunk = 1  # byte by byte, 1 ms apart
    gap = 0.05  # longer than any pause between two bytes, even on a loaded test machine
    line = SerialLine(await vbus.open_pty(tmp_path / "tty"))
    await line.open()
    loop = asyncio.get_running_loop()
    answer = p.wire_time(p.FRAME_LEN)
    try:
        await line.write(p.request_frame(V4, p.Request.A))
        start = loop.time()
        await asyncio.sleep(0.06)  # the answer has started (after 20 ms + 5 ms)
        await line.wait_silence(gap, limit=2.0)  # the whole answer, then the gap
        assert loop.time() - start >= answer + gap
        assert loop.time() - line.busy_until >= gap
        await line.write(p.request_frame(V4, p.Request.A))
        await asyncio.sleep(0.1)  # the answer is coming in
        start = loop.time()
        await line.wait_silence(gap, limit=0.02)  # a babbling line does not block for good
        assert loop.time() - start < 0.1
        assert loop.time() - line.busy_until < gap  # still busy
        await line.wait_silence(gap, limit=2.0)
        with pytest.raises(EkmNoResponseError):  # what arrived meanwhile was dropped
            await line.read_frame(first_byte_timeout=0.05, frame_timeout=0.1)
    finally:
        await line.close()


async def test_our_gap_counts_from_the_end_of_our_bytes(vbus: VirtualBus, tmp_path: Path) -> None:
    """write() returns when the bytes reach a buffer; the gap starts when they leave the wire."""
    line = SerialLine(await vbus.open_pty(tmp_path / "tty"))  # 9600 baud: 1.04 ms a character
    await line.open()
    loop = asyncio.get_running_loop()
    try:
        for frame in (p.CLOSE, p.password_frame()):
            await line.wait_silence(INTER_FRAME_GAP, limit=1.0)
            start = loop.time()
            await line.write(frame)
            assert line.busy_until >= start + p.wire_time(len(frame))
            await line.wait_silence(INTER_FRAME_GAP, limit=1.0)
            assert loop.time() - start >= p.wire_time(len(frame)) + INTER_FRAME_GAP
        # Two frames written back to back go out one after the other.
        start = loop.time()
        await line.write(p.CLOSE)
        await line.write(p.CLOSE)
        assert line.busy_until >= start + p.wire_time(10)
    finally:
        await line.close()
