"""One RS-485 line (local port or TCP/RFC 2217 converter) on serialx, framed by length.

``SerialLine`` only moves bytes: it opens the port at 9600 baud 7E1, writes frames,
and reads back exactly-framed answers (a 255-byte response or a one-byte ACK/NAK),
tolerating an adapter's echo of what was sent and line noise before STX. It knows
nothing about sessions or retries; :class:`~pyekm.rs485.client.EkmBus` does that under
one lock per line. It does know when the line last carried a byte either way, so that
``wait_silence`` can leave the inter-frame gap (``INTER_FRAME_GAP``) before we talk.

A 7E1 character and an 8N1 character both take 10 bit times (ekm-rs485.md §1), so a port
that refuses 7 data bits with even parity (some USB bridges, ptys) is run as 8N1 with
the parity computed in software: bit 7 of each byte sent carries the even parity of the
7 data bits, and bit 7 of each byte received is dropped (it always is: the protocol is
7-bit).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from typing import Any, Final, Literal

import serialx

from ..errors import EkmConnectionError, EkmCrcError, EkmNoResponseError, EkmProtocolError
from ..redact import redact_url
from .protocol import (
    ACK,
    BAUD_RATE,
    FRAME_LEN,
    NAK,
    STX,
    TRAILER,
    TRAILER_OFFSET,
    frame_crc_ok,
    wire_time,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT: Final = 5.0
# A meter sends its 255 bytes back to back; this much silence mid-frame means it stopped.
DEFAULT_IDLE_TIMEOUT: Final = 0.3
INTER_FRAME_GAP: Final = 0.010
"""Seconds of silence on the line before every frame we send (EkmBus's ``gap``).

Counted from the line's last activity, our last byte on the wire (write time plus its
wire time) or the last byte received, and not from when we got round to sending. The
old 50 ms, counted from then, made up 150 ms of a 755 ms A+B read (576 ms of wire time).

Why 10 ms (9.6 characters at 9600 baud): the gap is the half-duplex handover. After its
last stop bit a transmitter must release the bus before the other side talks; automatic
send-data control in RS-485 adapters drops the driver within one character (1.04 ms),
Modbus RTU separates frames by 3.5 characters (3.6 ms), and meter-class devices that
specify a host wait after their reply ask for 2.5 to 10 ms. EKM publishes no figure
(ekm-rs485.md §6): ekmmeters' 200 ms is a fixed sleep, not a stated need, and EKM staff
say meters can be polled "super fast". 10 ms covers the largest of those figures. The
same gap follows our close string, so a meter still busy ending the session is not sent
the next request at once.

How it was measured: ``benchmarks/bench_rs485.py --gaps`` sweeps the gap against the
baud-paced simulator, which records the silence before every host frame. The silence the
meter sees is the gap plus 0.2-1.3 ms of scheduling (asyncio rounds sleeps up to the
millisecond), median +1.2 ms over 40 reads. Each ms of gap costs 3 ms per A+B read
(three of our frames follow an answer or our close): about 624 ms with no gap, 655 ms
with 10 ms and 775 ms with 50 ms, for 576 ms of wire time and 40 ms of simulated meter
turnaround. Raise ``gap`` for hardware that needs more; a frame sent too early is lost,
timed out and retried.
"""

type Framing = Literal["auto", "7E1", "8N1"]

_SEVEN_BITS: Final = bytes(range(128)) * 2  # translate table: drop bit 7
_WITH_PARITY: Final = bytes(
    (b & 0x7F) | (0x80 if (b & 0x7F).bit_count() % 2 else 0) for b in range(256)
)


def add_even_parity(data: bytes) -> bytes:
    """Each byte's low 7 bits with their even parity in bit 7 (7E1 sent as 8N1)."""
    return data.translate(_WITH_PARITY)


def strip_parity(data: bytes) -> bytes:
    """Drop bit 7 of every byte."""
    return data.translate(_SEVEN_BITS)


def _refused_setting(err: Exception) -> bool:
    """Whether opening failed because the port cannot do 7 data bits / even parity."""
    if isinstance(err, serialx.UnsupportedSetting):
        return True
    return isinstance(err, OSError) and err.errno in (errno.EINVAL, errno.ENOTSUP)


class _LineProtocol(asyncio.Protocol):
    """Collects received bytes for SerialLine."""

    def __init__(self, line: SerialLine) -> None:
        self._line = line

    def data_received(self, data: bytes) -> None:
        self._line._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._line._lost(exc)


class SerialLine:
    """A serialx connection with a receive buffer and framed reads."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = BAUD_RATE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        framing: Framing = "auto",
    ) -> None:
        if framing not in ("auto", "7E1", "8N1"):
            raise ValueError("framing must be 'auto', '7E1' or '8N1'")
        self._url = url
        self._baudrate = baudrate
        self._connect_timeout = connect_timeout
        self._framing: Framing = framing
        self._software_parity = framing == "8N1"
        self._transport: asyncio.BaseTransport | None = None
        self._buffer = bytearray()
        self._data = asyncio.Event()
        self._lost_reason: str | None = None
        self._busy_until = 0.0  # loop time when the line last carried (or will carry) a byte
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def url(self) -> str:
        """The port as configured (may contain secrets; use ``safe_url`` in messages)."""
        return self._url

    @property
    def safe_url(self) -> str:
        """The port with any userinfo or secret query parameters redacted."""
        return redact_url(self._url) if "://" in self._url else self._url

    @property
    def software_parity(self) -> bool:
        """True when the port runs 8N1 and parity is computed here (see module doc)."""
        return self._software_parity

    @property
    def is_open(self) -> bool:
        """Whether the port is open and has not been lost."""
        return (
            self._transport is not None
            and self._lost_reason is None
            and not self._transport.is_closing()
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the port (9600 baud, 7E1 or 8N1 with software parity, no flow control).

        Raises EkmConnectionError if the port cannot be opened.
        """
        if self.is_open:
            return
        await self.close()
        try:
            if self._framing == "8N1":
                transport = await self._connect(seven_bits=False)
            else:
                try:
                    transport = await self._connect(seven_bits=True)
                    self._software_parity = False
                except (OSError, serialx.UnsupportedSetting) as err:
                    if self._framing == "7E1" or not _refused_setting(err):
                        raise
                    _LOGGER.debug("%s refuses 7E1; using 8N1 + software parity", self.safe_url)
                    transport = await self._connect(seven_bits=False)
                    self._software_parity = True
        except (OSError, TimeoutError, ValueError, serialx.SerialException) as err:
            reason = type(err).__name__ if isinstance(err, TimeoutError) else str(err)
            raise EkmConnectionError(f"Cannot open {self.safe_url}: {reason}") from err
        self._transport = transport
        self._lost_reason = None
        self._buffer.clear()
        self._busy_until = asyncio.get_running_loop().time()  # a gap after opening, too
        _LOGGER.debug("Opened %s", self.safe_url)

    async def _connect(self, *, seven_bits: bool) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {
            "parity": serialx.Parity.EVEN if seven_bits else serialx.Parity.NONE,
            "stopbits": serialx.StopBits.ONE,
            "byte_size": 7 if seven_bits else 8,
            "xonxoff": False,
            "rtscts": False,
            "connect_timeout": self._connect_timeout,
        }
        async with asyncio.timeout(self._connect_timeout):
            transport, _ = await serialx.create_serial_connection(
                loop, lambda: _LineProtocol(self), self._url, self._baudrate, **kwargs
            )
        return transport

    async def close(self) -> None:
        """Close the port (idempotent)."""
        transport, self._transport = self._transport, None
        self._buffer.clear()
        if transport is None:
            return
        transport.close()
        wait_closed = getattr(transport, "wait_closed", None)
        if wait_closed is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await wait_closed()
        _LOGGER.debug("Closed %s", self.safe_url)

    def _received(self, data: bytes) -> None:
        self._busy_until = max(self._busy_until, asyncio.get_running_loop().time())
        self._buffer += strip_parity(data)
        self.bytes_received += len(data)
        self._data.set()

    def _lost(self, exc: Exception | None) -> None:
        self._lost_reason = str(exc) if exc else "connection closed"
        self._data.set()
        _LOGGER.debug("Lost %s: %s", self.safe_url, self._lost_reason)

    def _check_open(self) -> asyncio.WriteTransport:
        transport = self._transport
        if transport is None or self._lost_reason is not None or transport.is_closing():
            reason = self._lost_reason or "port is not open"
            raise EkmConnectionError(f"{self.safe_url}: {reason}")
        assert isinstance(transport, asyncio.WriteTransport)
        return transport

    # --- I/O -------------------------------------------------------------------------------

    def discard_input(self) -> None:
        """Drop whatever was received so far (stale bytes, a late answer)."""
        self._buffer.clear()

    async def write(self, data: bytes) -> None:
        """Send bytes; raises EkmConnectionError when the port is gone."""
        transport = self._check_open()
        try:
            transport.write(add_even_parity(data) if self._software_parity else data)
        except (OSError, RuntimeError, serialx.SerialException) as err:
            self._lost(err)
            raise EkmConnectionError(f"{self.safe_url}: write failed: {err}") from err
        self._check_open()
        self.bytes_sent += len(data)
        # The UART sends after whatever it still has queued; this is when our last byte
        # leaves the wire (write() returns long before: the bytes only reached a buffer).
        now = asyncio.get_running_loop().time()
        self._busy_until = max(self._busy_until, now) + wire_time(len(data), self._baudrate)

    async def _wait_data(self, deadline: float) -> bool:
        """Wait for more bytes until ``deadline`` (loop time); False on timeout."""
        self._check_open()
        self._data.clear()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                await self._data.wait()
        except TimeoutError:
            return False
        self._check_open()
        return True

    def _strip_echo(self, echo: bytes) -> bytes:
        """Drop our own request if the adapter echoed it; returns what is left to match."""
        if not echo:
            return echo
        head = bytes(self._buffer[: len(echo)])
        if head == echo:
            del self._buffer[: len(echo)]
            return b""
        if echo.startswith(head):
            return echo  # a partial echo so far: wait for the rest
        return b""  # not an echo

    async def read_frame(
        self,
        *,
        echo: bytes = b"",
        first_byte_timeout: float,
        frame_timeout: float,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> bytes:
        """Read one 255-byte response: STX, trailer and CRC checked; resyncs on noise.

        Raises EkmNoResponseError if nothing arrived in ``first_byte_timeout``, the last
        validation error (EkmCrcError / EkmProtocolError) if bytes arrived but no valid
        frame did within ``frame_timeout`` or the line then fell silent for
        ``idle_timeout``, and EkmConnectionError if the port went away.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        first_deadline = start + first_byte_timeout
        deadline = start + frame_timeout
        error: EkmProtocolError | None = None
        got_any = False
        while True:
            echo = self._strip_echo(echo)
            if not echo:
                frame, error = self._scan_frame(error)
                if frame is not None:
                    return frame
            got_any = got_any or bool(self._buffer) or error is not None
            if got_any:
                limit = min(deadline, loop.time() + idle_timeout)
            else:
                limit = min(first_deadline, deadline)
            if not await self._wait_data(limit):
                if error is not None:
                    raise error
                if self._buffer:
                    raise EkmProtocolError(
                        f"Incomplete response ({len(self._buffer)} bytes, no valid frame)"
                    )
                raise EkmNoResponseError(f"No response on {self.safe_url}")

    def _scan_frame(
        self, error: EkmProtocolError | None
    ) -> tuple[bytes | None, EkmProtocolError | None]:
        """Find a structurally valid frame in the buffer, dropping bytes before it."""
        while True:
            start = self._buffer.find(STX)
            if start < 0:
                if self._buffer:
                    error = error or EkmProtocolError("Noise on the line, no STX")
                self._buffer.clear()
                return None, error
            if start:
                del self._buffer[:start]
                error = error or EkmProtocolError("Noise before STX")
            if len(self._buffer) < FRAME_LEN:
                return None, error
            candidate = bytes(self._buffer[:FRAME_LEN])
            if candidate[TRAILER_OFFSET : TRAILER_OFFSET + 4] != TRAILER:
                error = EkmProtocolError("Response trailer is not '!\\r\\n' + ETX")
            elif not frame_crc_ok(candidate):
                error = EkmCrcError("Response CRC mismatch")
            else:
                del self._buffer[:FRAME_LEN]
                return candidate, error
            del self._buffer[:1]  # resync on the next STX

    async def read_ack(self, *, echo: bytes = b"", wait: float) -> int | None:
        """Read the meter's one-byte answer: ACK or NAK; None if neither came in time.

        Anything else (noise) before the answer is skipped; ``wait`` is in seconds.
        """
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            echo = self._strip_echo(echo)
            if not echo:
                while self._buffer:
                    byte = self._buffer.pop(0)
                    if byte in (ACK, NAK):
                        return byte
            if not await self._wait_data(deadline):
                return None

    @property
    def busy_until(self) -> float:
        """Loop time of the line's last activity: a byte received, or our last byte sent."""
        return self._busy_until

    async def wait_silence(self, gap: float, *, limit: float) -> None:
        """Wait until the line has been silent for ``gap`` s, then drop what came meanwhile.

        Bytes still arriving (a late answer, noise) push the wait on, for up to ``limit``
        seconds in all: a babbling line must not block the bus for good.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + limit
        while True:  # not an Event: each byte received moves the end of the wait
            wait = min(self._busy_until + gap, give_up) - loop.time()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        self.discard_input()

    async def wait_quiet(self, seconds: float) -> None:
        """Sleep, then drop anything received meanwhile (a late or stray answer)."""
        if seconds > 0:
            await asyncio.sleep(seconds)
        self.discard_input()
