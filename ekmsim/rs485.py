"""Virtual Omnimeters (v3, v4, v5) on an RS-485 line: a pty and/or a TCP port.

A :class:`VirtualBus` puts several :class:`~ekmsim.fleet.SimMeter` on one wire. The
host (pyekm's ``EkmBus``, or any EKM tool) opens the pty's slave path or connects to the
TCP port, as it would a USB adapter or an RS-485-to-Ethernet converter. Each meter answers
only its own address (or ``999999999999``), with frames this module encodes from the
meter's ``snapshot()``: it shares no code with pyekm, so a layout or CRC mistake on either
side shows up in tests.

Timing follows the line: every byte the meters send takes 10 bit times at ``baud``
(9600 by default, 1.04 ms) and reaches the host once its stop bit is out, as from a
UART; a host frame is "on the wire" for its own length, after the host's previous frame
(the host's UART sends them one after the other), before the meter starts answering; and
the meter turns around in ``turnaround`` seconds. The line is half duplex: a host frame
that starts while a meter is still sending, or less than ``listen_delay`` seconds after
its last byte, is lost (``VirtualBus.collisions``). ``VirtualBus.silences`` records how
long the line was quiet before each host frame.

Faults (:class:`Faults`, switchable at runtime, by rate or one-shot) corrupt the CRC,
truncate frames, stay silent, echo the host's bytes (like a 2-wire adapter) and send
noise before answers. ``unplug()`` / ``replug()`` make the port disappear and come back.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
import errno
import logging
import os
from pathlib import Path
import random
import termios
from typing import Any, Final

from .fleet import Fleet, SimMeter

_LOGGER = logging.getLogger(__name__)

WILDCARD: Final = "999999999999"
SOH, STX, ETX, ACK, NAK = 0x01, 0x02, 0x03, 0x06, 0x15
CLOSE: Final = b"\x01B0\x03u"
TRAILER: Final = b"!\r\n\x03"
_DETACHED_POLL_S: Final = 0.02
_MAX_INPUT: Final = 4096
_MAX_SILENCES: Final = 10_000


def ekm_crc(data: bytes) -> bytes:
    """EKM's CRC: CRC-16/MODBUS, each byte masked to 7 bits, low byte first (§3)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes((crc & 0x7F, (crc >> 8) & 0x7F))


# --- frame encoding (own tables, §4.2-§4.4 of ekm-rs485.md) ----------------------------------
# (name, offset, width, kind): kind "kwh" scales by the meter's decimals, "d1"/"d2" by
# 10/100, "int" as is, "pf" is the 4-character power factor, "text" is copied.

type Row = tuple[str, int, int, str]

_V3_ROWS: Final[tuple[Row, ...]] = (
    ("kWh_Tot", 16, 8, "kwh"), ("kWh_Tariff_1", 24, 8, "kwh"), ("kWh_Tariff_2", 32, 8, "kwh"),
    ("kWh_Tariff_3", 40, 8, "kwh"), ("kWh_Tariff_4", 48, 8, "kwh"),
    ("Rev_kWh_Tot", 56, 8, "kwh"), ("Rev_kWh_Tariff_1", 64, 8, "kwh"),
    ("Rev_kWh_Tariff_2", 72, 8, "kwh"), ("Rev_kWh_Tariff_3", 80, 8, "kwh"),
    ("Rev_kWh_Tariff_4", 88, 8, "kwh"),
    ("RMS_Volts_Ln_1", 96, 4, "d1"), ("RMS_Volts_Ln_2", 100, 4, "d1"),
    ("RMS_Volts_Ln_3", 104, 4, "d1"),
    ("Amps_Ln_1", 108, 5, "d1"), ("Amps_Ln_2", 113, 5, "d1"), ("Amps_Ln_3", 118, 5, "d1"),
    ("RMS_Watts_Ln_1", 123, 7, "int"), ("RMS_Watts_Ln_2", 130, 7, "int"),
    ("RMS_Watts_Ln_3", 137, 7, "int"), ("RMS_Watts_Tot", 144, 7, "int"),
    ("Power_Factor_Ln_1", 151, 4, "pf"), ("Power_Factor_Ln_2", 155, 4, "pf"),
    ("Power_Factor_Ln_3", 159, 4, "pf"),
    ("RMS_Watts_Max_Demand", 163, 8, "d1"), ("Max_Demand_Period", 171, 1, "int"),
    ("Meter_Time", 172, 14, "text"), ("CT_Ratio", 186, 4, "int"),
    ("Pulse_Cnt_1", 190, 8, "int"), ("Pulse_Cnt_2", 198, 8, "int"),
    ("Pulse_Cnt_3", 206, 8, "int"),
    ("Pulse_Ratio_1", 214, 4, "int"), ("Pulse_Ratio_2", 218, 4, "int"),
    ("Pulse_Ratio_3", 222, 4, "int"),
    ("State_Inputs", 226, 3, "int"), ("Meter_Status_Code", 247, 2, "text"),
)  # fmt: skip

_A_ROWS: Final[tuple[Row, ...]] = (
    ("kWh_Tot", 16, 8, "kwh"), ("Reactive_Energy_Tot", 24, 8, "kwh"),
    ("Rev_kWh_Tot", 32, 8, "kwh"),
    ("kWh_Ln_1", 40, 8, "kwh"), ("kWh_Ln_2", 48, 8, "kwh"), ("kWh_Ln_3", 56, 8, "kwh"),
    ("Rev_kWh_Ln_1", 64, 8, "kwh"), ("Rev_kWh_Ln_2", 72, 8, "kwh"),
    ("Rev_kWh_Ln_3", 80, 8, "kwh"),
    ("kWh_Rst", 88, 8, "kwh"), ("Rev_kWh_Rst", 96, 8, "kwh"),
    ("RMS_Volts_Ln_1", 104, 4, "d1"), ("RMS_Volts_Ln_2", 108, 4, "d1"),
    ("RMS_Volts_Ln_3", 112, 4, "d1"),
    ("Amps_Ln_1", 116, 5, "d1"), ("Amps_Ln_2", 121, 5, "d1"), ("Amps_Ln_3", 126, 5, "d1"),
    ("RMS_Watts_Ln_1", 131, 7, "int"), ("RMS_Watts_Ln_2", 138, 7, "int"),
    ("RMS_Watts_Ln_3", 145, 7, "int"), ("RMS_Watts_Tot", 152, 7, "int"),
    ("Power_Factor_Ln_1", 159, 4, "pf"), ("Power_Factor_Ln_2", 163, 4, "pf"),
    ("Power_Factor_Ln_3", 167, 4, "pf"),
    ("Reactive_Pwr_Ln_1", 171, 7, "int"), ("Reactive_Pwr_Ln_2", 178, 7, "int"),
    ("Reactive_Pwr_Ln_3", 185, 7, "int"), ("Reactive_Pwr_Tot", 192, 7, "int"),
    ("Line_Freq", 199, 4, "d2"),
    ("Pulse_Cnt_1", 203, 8, "int"), ("Pulse_Cnt_2", 211, 8, "int"),
    ("Pulse_Cnt_3", 219, 8, "int"),
    ("State_Inputs", 227, 1, "int"), ("State_Watts_Dir", 228, 1, "int"),
    ("State_Out", 229, 1, "int"), ("kWh_Scale", 230, 1, "int"),
    ("Meter_Time", 233, 14, "text"),
)  # fmt: skip

_B_ROWS: Final[tuple[Row, ...]] = (
    ("kWh_Tariff_1", 16, 8, "kwh"), ("kWh_Tariff_2", 24, 8, "kwh"),
    ("kWh_Tariff_3", 32, 8, "kwh"), ("kWh_Tariff_4", 40, 8, "kwh"),
    ("Rev_kWh_Tariff_1", 48, 8, "kwh"), ("Rev_kWh_Tariff_2", 56, 8, "kwh"),
    ("Rev_kWh_Tariff_3", 64, 8, "kwh"), ("Rev_kWh_Tariff_4", 72, 8, "kwh"),
    ("RMS_Volts_Ln_1", 80, 4, "d1"), ("RMS_Volts_Ln_2", 84, 4, "d1"),
    ("RMS_Volts_Ln_3", 88, 4, "d1"),
    ("Amps_Ln_1", 92, 5, "d1"), ("Amps_Ln_2", 97, 5, "d1"), ("Amps_Ln_3", 102, 5, "d1"),
    ("RMS_Watts_Ln_1", 107, 7, "int"), ("RMS_Watts_Ln_2", 114, 7, "int"),
    ("RMS_Watts_Ln_3", 121, 7, "int"), ("RMS_Watts_Tot", 128, 7, "int"),
    ("Power_Factor_Ln_1", 135, 4, "pf"), ("Power_Factor_Ln_2", 139, 4, "pf"),
    ("Power_Factor_Ln_3", 143, 4, "pf"),
    ("RMS_Watts_Max_Demand", 147, 8, "d1"), ("Max_Demand_Period", 155, 1, "int"),
    ("Pulse_Ratio_1", 156, 4, "int"), ("Pulse_Ratio_2", 160, 4, "int"),
    ("Pulse_Ratio_3", 164, 4, "int"), ("CT_Ratio", 168, 4, "int"),
    ("Max_Demand_Rst", 172, 1, "int"), ("CF_Ratio", 173, 4, "int"),
    ("Meter_Status_Code_A", 230, 1, "text"), ("Meter_Status_Code_B", 231, 1, "text"),
    ("Meter_Status_Code_C", 232, 1, "text"), ("Meter_Time", 233, 14, "text"),
)  # fmt: skip


def _digits(value: float, width: int) -> bytes:
    """Zero-padded digits; registers wider than the field roll over like the meter's."""
    number = round(abs(value)) % 10**width
    return f"{number:0{width}d}".encode()


def _pf_text(code: int) -> bytes:
    """EKM PF code (0..200) as the meter's 'L095' / 'C083' / ' 100'."""
    if code < 100:
        return f"L{code:03d}".encode()
    if code > 100:
        return f"C{200 - code:03d}".encode()
    return b" 100"


def encode_frame(meter: SimMeter, kind: str, values: dict[str, float | int | str]) -> bytes:
    """The 255-byte response of ``meter`` to request ``kind`` ('v3', 'a' or 'b')."""
    rows = {"v3": _V3_ROWS, "a": _A_ROWS, "b": _B_ROWS}[kind]
    body = bytearray(b"0" * 255)
    body[0] = STX
    body[1:3] = bytes.fromhex(meter.model)[:2].rjust(2, b"\x00")
    body[3:4] = bytes.fromhex(meter.firmware)[:1].rjust(1, b"\x00")
    body[4:16] = meter.address.encode()
    decimals = meter.kwh_decimals
    for name, offset, width, how in rows:
        value = values.get(name, 0)
        if how == "text":
            raw = str(value).encode()[:width].rjust(width, b"0")
        elif how == "pf":
            raw = _pf_text(int(value))
        else:
            scale = {"kwh": 10**decimals, "d1": 10, "d2": 100, "int": 1}[how]
            raw = _digits(float(value) * scale, width)
        body[offset : offset + width] = raw
    if kind != "v3":
        body[247:249] = b"00" if kind == "a" else b"01"
    body[249:253] = TRAILER
    body[253:255] = ekm_crc(bytes(body[1:253]))
    return bytes(body)


# --- faults ------------------------------------------------------------------------------------

FAULT_KINDS: Final = ("crc", "truncate", "silence", "garbage", "collision", "refuse")


@dataclass
class Faults:
    """What goes wrong on the line; change any field at runtime.

    Rates are probabilities per response (0 = never, 1 = always); :meth:`once` queues
    one-shot faults that fire on the next responses regardless of the rates.

    * ``crc``: a response with a wrong CRC; ``truncate``: a response cut short;
      ``silence``: no answer to a request; ``garbage``: noise before a response;
      ``collision``: the response mixed with another meter's; ``refuse``: a W1 command
      refused (NAK, or silence when ``nak`` is off).
    * ``target``: limit the response faults to one request kind ('v3', 'a' or 'b').
    * ``echo``: the line echoes the host's bytes back (a 2-wire adapter's local echo).
    * ``nak``: a wrong password or refused command gets NAK (0x15) instead of silence.
    """

    crc: float = 0.0
    truncate: float = 0.0
    silence: float = 0.0
    garbage: float = 0.0
    collision: float = 0.0
    refuse: float = 0.0
    target: str | None = None
    echo: bool = False
    nak: bool = True
    seed: int | None = 0
    pending: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def once(self, kind: str, count: int = 1) -> None:
        """Inject ``count`` faults of ``kind`` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        self.pending[kind] = self.pending.get(kind, 0) + count

    def clear(self) -> None:
        """Back to a clean line (no rates, no pending faults, no echo)."""
        self.crc = self.truncate = self.silence = self.garbage = 0.0
        self.collision = self.refuse = 0.0
        self.target = None
        self.echo = False
        self.pending.clear()

    def hit(self, kind: str) -> bool:
        """Whether a fault of ``kind`` happens now (consumes a one-shot)."""
        if self.pending.get(kind, 0) > 0:
            self.pending[kind] -= 1
            return True
        rate: float = getattr(self, kind, 0.0)
        return rate > 0 and self._rng.random() < rate

    def cut(self, length: int) -> int:
        """Where a truncated response ends."""
        return self._rng.randint(1, length - 1)

    def noise(self, n: int | None = None) -> bytes:
        """Printable noise (never STX, ACK or NAK)."""
        count = n if n is not None else self._rng.randint(1, 24)
        return bytes(self._rng.randint(0x20, 0x7E) for _ in range(count))


@dataclass(frozen=True, slots=True)
class Command:
    """A command a meter received (for tests): address, W1 code and data."""

    address: str
    code: str
    data: str
    accepted: bool


# --- one wire ------------------------------------------------------------------------------------


class _Wire:
    """One host connection (the pty, or one TCP client): parser, session, paced output."""

    def __init__(self, bus: VirtualBus, write: Callable[[bytes], None], name: str) -> None:
        self._bus = bus
        self._write_raw = write
        self.name = name
        self._rx = bytearray()
        self._rx_start: float | None = None
        self._frames: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        # (bytes, from a meter): the line's echo of the host is not a meter talking.
        self._out: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
        self._host_free = 0.0  # when the host's frames queued so far leave the wire
        self._last_host_end = 0.0
        self._meter_until = 0.0  # when the meters' last byte leaves the wire
        self._selected: SimMeter | None = None
        self._authorized = False
        self._tasks = [
            asyncio.create_task(self._serve(), name=f"ekmsim-rs485-{name}-serve"),
            asyncio.create_task(self._transmit(), name=f"ekmsim-rs485-{name}-tx"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset(self) -> None:
        """A new host connection: forget the half-received frame and the session."""
        self._rx.clear()
        self._rx_start = None
        self._host_free = self._meter_until = self._last_host_end = 0.0
        self._selected = None
        self._authorized = False

    # input -----------------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        # A meter's UART reads 7 data bits: a host running 8N1 with software parity
        # (bit 7) looks the same to it.
        data = bytes(b & 0x7F for b in data)
        loop_time = asyncio.get_running_loop().time()
        if self._bus.faults.echo:
            self._out.put_nowait((data, False))
        if not self._rx:
            self._rx_start = loop_time
        self._rx += data
        if len(self._rx) > _MAX_INPUT:
            del self._rx[: len(self._rx) - _MAX_INPUT]
        while True:
            frame = self._take_frame()
            if frame is None:
                break
            arrived = self._rx_start if self._rx_start is not None else loop_time
            self._rx_start = loop_time if self._rx else None
            # The host's UART sends its frames back to back; each takes its own length.
            start = max(arrived, self._host_free)
            self._host_free = start + len(frame) * self._bus.char_time
            bus = self._bus
            bus.silences.append(start - max(self._meter_until, self._last_host_end))
            self._last_host_end = self._host_free
            if start < self._meter_until + bus.listen_delay:
                bus.collisions += 1  # talked over a meter: nobody hears this frame
                continue
            self._frames.put_nowait((frame, self._host_free))

    def _take_frame(self) -> bytes | None:
        """Cut one complete host frame off the input; skip noise before it."""
        rx = self._rx
        while rx and rx[0] not in (SOH, ord("/")):
            del rx[0]
        if not rx:
            return None
        if rx[0] == ord("/"):
            end = rx.find(b"\r\n")
            if end < 0:
                return None
            frame = bytes(rx[: end + 2])
        elif len(rx) >= 3 and rx[1:3] == b"B0":
            if len(rx) < len(CLOSE):
                return None
            frame = bytes(rx[: len(CLOSE)])
        else:
            end = rx.find(bytes([ETX]), 1)
            if end < 0 or len(rx) < end + 3:
                return None
            frame = bytes(rx[: end + 3])
        del rx[: len(frame)]
        return frame

    # sessions --------------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame, wire_end = await self._frames.get()
            delay = wire_end + self._bus.turnaround - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                self._handle(frame)
            except Exception:
                _LOGGER.exception("Virtual RS-485 %s: frame handling failed", self.name)

    def _handle(self, frame: bytes) -> None:
        if frame[0] == ord("/"):
            self._request(frame)
        elif frame == CLOSE:
            self._selected = None
            self._authorized = False
        elif frame[1:3] == b"P1":
            self._password(frame)
        elif frame[1:3] == b"W1":
            self._command(frame)
        # R1 table reads and anything else: no simulated answer.

    def _request(self, frame: bytes) -> None:
        text = frame[2:-3].decode("ascii", "replace")  # between "/?" and "!\r\n"
        self._selected = None
        self._authorized = False
        if frame[:2] != b"/?" or frame[-3:] != b"!\r\n":
            return
        if len(text) == 12:
            address, kind = text, "v3"
        elif len(text) == 14 and text[12:] in ("00", "01"):
            address, kind = text[:12], "a" if text[12:] == "00" else "b"
        else:
            return
        meters = [
            m
            for m in self._bus.meters
            if m.responsive
            and (address in (m.address, WILDCARD))
            and (kind == "v3") == (m.protocol == "v3")
        ]
        if not meters:
            return
        faults = self._bus.faults
        targeted = faults.target in (None, kind)
        if targeted and faults.hit("silence"):
            return
        frames = [encode_frame(m, kind, dict(m.snapshot())) for m in meters]
        response = frames[0]
        if len(meters) > 1 or (targeted and faults.hit("collision")):
            response = _collide(frames, faults)
        else:
            self._selected = meters[0]
        if targeted and faults.hit("crc"):
            response = response[:253] + bytes(((response[253] + 1) & 0x7F, response[254]))
        if targeted and faults.hit("truncate"):
            response = response[: faults.cut(len(response))]
        if targeted and faults.hit("garbage"):
            response = faults.noise() + response
        self._bus.requests += 1
        self._out.put_nowait((response, True))

    def _reply(self, ok: bool) -> None:
        if ok:
            self._out.put_nowait((bytes([ACK]), True))
        elif self._bus.faults.nak:
            self._out.put_nowait((bytes([NAK]), True))

    def _password(self, frame: bytes) -> None:
        meter = self._selected
        if meter is None or not _crc_ok(frame):
            return
        body = frame[4:-3]  # "(" + 8 digits + ")"
        self._authorized = body == b"(" + meter.password.encode() + b")"
        self._reply(self._authorized)

    def _command(self, frame: bytes) -> None:
        meter = self._selected
        if meter is None or not _crc_ok(frame):
            return
        body = frame[4:-3].decode("ascii", "replace")
        code, _, rest = body.partition("(")
        data = rest[:-1] if rest.endswith(")") else rest
        accepted = (
            self._authorized and not self._bus.faults.hit("refuse") and _apply(meter, code, data)
        )
        self._bus.commands.append(Command(meter.address, code, data, accepted))
        self._reply(accepted)

    # output ----------------------------------------------------------------------------

    async def _transmit(self) -> None:
        """Send queued bytes at the line rate (10 bit times per character).

        Each piece is handed over when its last stop bit is out, as a UART delivers a
        byte only once it has received all of it.
        """
        loop = asyncio.get_running_loop()
        next_free = loop.time()
        while True:
            data, from_meter = await self._out.get()
            chunk = self._bus.chunk
            # An idle line starts now; otherwise keep the UART's exact schedule (sleeping
            # late by a millisecond must not add up over a frame).
            next_free = max(next_free, loop.time())
            if from_meter:
                self._meter_until = next_free + len(data) * self._bus.char_time
            for i in range(0, len(data), chunk):
                piece = data[i : i + chunk]
                next_free += len(piece) * self._bus.char_time
                wait = next_free - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._write_raw(piece)
                if from_meter:  # a late wake-up keeps the line busy longer
                    self._meter_until = max(self._meter_until, loop.time())


def _crc_ok(frame: bytes) -> bool:
    return len(frame) >= 5 and ekm_crc(frame[1:-2]) == frame[-2:]


def _collide(frames: list[bytes], faults: Faults) -> bytes:
    """Two or more meters talking at once: the bytes mix (F1845)."""
    mixed = bytearray(frames[0])
    other = frames[1] if len(frames) > 1 else faults.noise(len(mixed))
    for i in range(1, len(mixed), 3):
        mixed[i] = (mixed[i] | other[i]) & 0x7F
    if bytes(mixed) == frames[0]:
        mixed[16] = (mixed[16] ^ 0x01) & 0x7F
    return bytes(mixed)


def _apply(meter: SimMeter, code: str, data: str) -> bool:
    """Carry out a W1 command; False when the meter would refuse it."""
    v4 = meter.protocol != "v3"
    try:
        match code:
            case "0081" | "0082" if v4 and len(data) == 5 and data.isdigit():
                meter.set_relay(int(code[3]), data[0] == "1", int(data[1:]))
            case "0060" if len(data) == 14 and data.isdigit():
                meter.set_time(
                    datetime(
                        2000 + int(data[0:2]),
                        int(data[2:4]),
                        int(data[4:6]),
                        int(data[8:10]),
                        int(data[10:12]),
                        int(data[12:14]),
                    )
                )
            case "00D3" if v4 and data == "":
                meter.zero_resettable()
            case "0040" if data == "000000":
                meter.reset_max_demand()
            case "00D0" if len(data) == 4 and data.isdigit():
                meter.set_ct_ratio(int(data))
            case "00A0" | "00A1" | "00A2" if v4 and len(data) == 4 and data.isdigit():
                meter.set_pulse_ratio(int(code[3]) + 1, int(data))
            case "00D4" if v4 and len(data) == 4 and data.isdigit():
                meter.set_pulse_output_ratio(int(data))
            case "0050" if len(data) == 1 and data.isdigit():
                meter.set_max_demand_period(int(data))
            case "00D5" if v4 and len(data) == 1 and data.isdigit():
                meter.set_max_demand_reset(int(data))
            case "0020" if len(data) == 8 and data.isdigit():
                meter.password = data
            case _:
                return False
    except ValueError:
        return False
    return True


# --- the bus ------------------------------------------------------------------------------------


class VirtualBus:
    """Virtual Omnimeters on one RS-485 line, reachable over a pty and/or TCP.

    Args:
        meters: the meters on the bus (each answers its own address, or the wildcard
            when it is alone).
        faults: fault knobs (see :class:`Faults`); ``bus.faults`` can be changed any time.
        baud: line rate used for pacing (the host side does not need to match it).
        turnaround: seconds between the end of a request and the first answering byte.
        listen_delay: seconds after a meter's last byte before it hears the line again
            (a transceiver that releases the bus late); a host frame that starts sooner
            is lost, as is one that starts while a meter is sending.
        chunk: bytes written per pacing step.

    """

    def __init__(
        self,
        meters: list[SimMeter] | tuple[SimMeter, ...],
        *,
        faults: Faults | None = None,
        baud: int = 9600,
        turnaround: float = 0.02,
        listen_delay: float = 0.0,
        chunk: int = 8,
    ) -> None:
        self.meters = list(meters)
        self.faults = faults or Faults()
        self.baud = baud
        self.turnaround = turnaround
        self.listen_delay = listen_delay
        self.chunk = max(1, chunk)
        self.requests = 0
        self.collisions = 0
        # Seconds the line was quiet before each host frame (newest last).
        self.silences: deque[float] = deque(maxlen=_MAX_SILENCES)
        self.commands: list[Command] = []
        self._pty: _PtyEndpoint | None = None
        self._tcp: _TcpEndpoint | None = None

    @property
    def char_time(self) -> float:
        """Seconds per character on the line (10 bit times)."""
        return 10 / self.baud

    def meter(self, address: str) -> SimMeter:
        """The meter with this address."""
        for meter in self.meters:
            if meter.address == address:
                return meter
        raise KeyError(address)

    @property
    def pty_path(self) -> str | None:
        """The path a host opens (the symlink if one was asked for), or None."""
        return self._pty.path if self._pty else None

    @property
    def tcp_port(self) -> int | None:
        """The TCP port, or None."""
        return self._tcp.port if self._tcp else None

    async def open_pty(self, link: str | os.PathLike[str] | None = None) -> str:
        """Create the pty; returns the path to open (``link``, a symlink, if given)."""
        if self._pty is None:
            self._pty = _PtyEndpoint(self, Path(link) if link is not None else None)
        self._pty.open()
        return self._pty.path

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on TCP (one host connection = one wire); returns the port."""
        if self._tcp is None:
            self._tcp = _TcpEndpoint(self)
        return await self._tcp.start(host, port)

    async def unplug(self) -> None:
        """Make the port disappear: the pty (and its symlink) goes, TCP connections drop."""
        if self._pty is not None:
            await self._pty.close()
        if self._tcp is not None:
            await self._tcp.stop()

    async def replug(self) -> None:
        """Bring the port back (a new pty behind the same symlink; TCP on the same port)."""
        if self._pty is not None:
            self._pty.open()
        if self._tcp is not None and self._tcp.host is not None:
            await self._tcp.start(self._tcp.host, self._tcp.port or 0)

    async def close(self) -> None:
        """Stop everything."""
        await self.unplug()
        self._pty = None
        self._tcp = None

    async def __aenter__(self) -> VirtualBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _PtyEndpoint:
    """A pty master; the host opens the slave. Detects host open/close by EIO."""

    def __init__(self, bus: VirtualBus, link: Path | None) -> None:
        self._bus = bus
        self._link = link
        self._fd: int | None = None
        self._wire: _Wire | None = None
        self._slave_name = ""
        self._attrs: list[Any] | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._attached = False

    @property
    def path(self) -> str:
        return str(self._link) if self._link is not None else self._slave_name

    def open(self) -> None:
        if self._fd is not None:
            return
        master, slave = os.openpty()
        self._slave_name = os.ttyname(slave)
        self._attrs = termios.tcgetattr(slave)
        os.close(slave)  # the host opens it; EIO on the master means "no host"
        os.set_blocking(master, False)
        self._fd = master
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                self._link.unlink()
            self._link.symlink_to(self._slave_name)
        self._wire = _Wire(self._bus, self._write, "pty")
        self._attached = False
        self._check()

    def _write(self, data: bytes) -> None:
        if self._fd is None or not self._attached:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, data)

    def _check(self) -> None:
        """Poll while no host has the slave open; switch to a reader once one has."""
        self._poll = None
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, _MAX_INPUT)
        except BlockingIOError:
            data = b""
        except OSError as err:
            if err.errno != errno.EIO:
                raise
            self._detached()
            return
        self._attached = True
        if self._wire is not None:
            self._wire.reset()
        asyncio.get_running_loop().add_reader(self._fd, self._readable)
        if data and self._wire is not None:
            self._wire.received(data)

    def _readable(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, _MAX_INPUT)
        except BlockingIOError:
            return
        except OSError:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._detached()
            return
        if self._wire is not None:
            self._wire.received(data)

    def _detached(self) -> None:
        """No host: restore the slave's line settings (ptys only accept them once changed)."""
        self._attached = False
        if self._fd is not None and self._attrs is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSANOW, self._attrs)
        self._poll = asyncio.get_running_loop().call_later(_DETACHED_POLL_S, self._check)

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        fd, self._fd = self._fd, None
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                self._link.unlink()
        wire, self._wire = self._wire, None
        if wire is not None:
            await wire.close()


class _TcpEndpoint:
    """A TCP listener; each accepted connection is its own wire to the same meters."""

    def __init__(self, bus: VirtualBus) -> None:
        self._bus = bus
        self._server: asyncio.Server | None = None
        self._conns: set[_TcpConnection] = set()
        self.closing: set[asyncio.Task[None]] = set()
        self.host: str | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _TcpConnection(self), host, port, reuse_address=True
            )
            self.host = host
            self.port = self._server.sockets[0].getsockname()[1]
        assert self.port is not None
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._conns):
            await conn.shutdown()
        if self.closing:
            await asyncio.gather(*self.closing, return_exceptions=True)
        if server is not None:
            await server.wait_closed()


class _TcpConnection(asyncio.Protocol):
    def __init__(self, endpoint: _TcpEndpoint) -> None:
        self._endpoint = endpoint
        self._transport: asyncio.Transport | None = None
        self._wire: _Wire | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._wire = _Wire(self._endpoint._bus, self._write, "tcp")
        self._endpoint._conns.add(self)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self._wire is not None:
            self._wire.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._wire is not None:
            task = asyncio.get_running_loop().create_task(self.shutdown())
            self._endpoint.closing.add(task)
            task.add_done_callback(self._endpoint.closing.discard)

    async def shutdown(self) -> None:
        self._endpoint._conns.discard(self)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        wire, self._wire = self._wire, None
        if wire is not None:
            await wire.close()


# --- python -m ekmsim ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--rs485-pty`` / ``--rs485-tcp`` to the simulator's command line."""
    group = parser.add_argument_group("RS-485 (virtual Omnimeters)")
    group.add_argument(
        "--rs485-pty",
        metavar="LINK",
        help="serve the fleet's meters on a pty; LINK is a symlink to create ('auto': none)",
    )
    group.add_argument(
        "--rs485-tcp", type=int, metavar="PORT", help="serve them on this TCP port (0: any)"
    )
    group.add_argument(
        "--rs485-meters",
        help="addresses on the bus, comma separated (default: every meter of the fleet); "
        "ADDRESS:v3|v4|v5 adds a local-only meter that the cloud account does not have",
    )


async def start_from_args(
    fleet: Fleet, args: argparse.Namespace, host: str = "127.0.0.1"
) -> VirtualBus | None:
    """Start the bus if ``--rs485-pty`` or ``--rs485-tcp`` was given; ``close()`` stops it."""
    if args.rs485_pty is None and args.rs485_tcp is None:
        return None
    wanted = [a.strip() for a in (args.rs485_meters or "").split(",") if a.strip()]
    meters = [_bus_meter(fleet, a) for a in wanted] if wanted else list(fleet.meters.values())
    bus = VirtualBus(meters)
    if args.rs485_pty is not None:
        link = None if args.rs485_pty == "auto" else args.rs485_pty
        path = await bus.open_pty(link)
        print(f"rs485: pty {path}", flush=True)
    if args.rs485_tcp is not None:
        port = await bus.serve_tcp(host, args.rs485_tcp)
        print(f"rs485: socket://{host}:{port}", flush=True)
    return bus


def _bus_meter(fleet: Fleet, spec: str) -> SimMeter:
    """A fleet meter by address, or ``ADDRESS:PROTOCOL`` for a local-only meter."""
    address, _, protocol = spec.partition(":")
    if not protocol:
        return fleet.meters[address.zfill(12)]
    return SimMeter(address=address.zfill(12), protocol=protocol, clock=fleet.clock)


async def start_service(
    fleet: Fleet, args: argparse.Namespace
) -> Callable[[], Awaitable[None]] | None:
    """``python -m ekmsim`` hook: serve the bus if asked to; returns its stop."""
    bus = await start_from_args(fleet, args, getattr(args, "host", None) or "127.0.0.1")
    return None if bus is None else bus.close


__all__ = [
    "Command",
    "Faults",
    "VirtualBus",
    "add_arguments",
    "encode_frame",
    "start_from_args",
]
