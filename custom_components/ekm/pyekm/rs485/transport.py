"""One RS-485 line (local port or TCP/RFC 2217 converter) on serialx, framed by length.

``SerialLine`` only moves bytes: it opens the port at 9600 baud 7E1, writes frames,
and reads back exactly-framed answers (a 255-byte response or a one-byte ACK/NAK),
tolerating an adapter's echo of what was sent and line noise before STX. It knows
nothing about sessions or retries; :class:`~pyekm.rs485.client.EkmBus` does that under
one lock per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

import serialx

from ..errors import EkmConnectionError, EkmCrcError, EkmNoResponseError, EkmProtocolError
from ..redact import redact_url
from .protocol import ACK, BAUD_RATE, FRAME_LEN, NAK, STX, TRAILER, TRAILER_OFFSET, frame_crc_ok

_LOGGER = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT: Final = 5.0


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
    ) -> None:
        self._url = url
        self._baudrate = baudrate
        self._connect_timeout = connect_timeout
        self._transport: asyncio.BaseTransport | None = None
        self._buffer = bytearray()
        self._data = asyncio.Event()
        self._lost_reason: str | None = None
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
    def is_open(self) -> bool:
        """Whether the port is open and has not been lost."""
        return (
            self._transport is not None
            and self._lost_reason is None
            and not self._transport.is_closing()
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the port (9600 7E1, no flow control); EkmConnectionError if impossible."""
        if self.is_open:
            return
        await self.close()
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {
            "parity": serialx.Parity.EVEN,
            "stopbits": serialx.StopBits.ONE,
            "byte_size": 7,
            "xonxoff": False,
            "rtscts": False,
            "connect_timeout": self._connect_timeout,
        }
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, _ = await serialx.create_serial_connection(
                    loop, lambda: _LineProtocol(self), self._url, self._baudrate, **kwargs
                )
        except (OSError, TimeoutError, ValueError, serialx.SerialException) as err:
            reason = type(err).__name__ if isinstance(err, TimeoutError) else str(err)
            raise EkmConnectionError(f"Cannot open {self.safe_url}: {reason}") from err
        self._transport = transport
        self._lost_reason = None
        self._buffer.clear()
        _LOGGER.debug("Opened %s", self.safe_url)

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
        self._buffer += data
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
            transport.write(data)
            flush = getattr(transport, "flush", None)
            if flush is not None:
                await flush()
        except (OSError, RuntimeError, serialx.SerialException) as err:
            self._lost(err)
            raise EkmConnectionError(f"{self.safe_url}: write failed: {err}") from err
        self._check_open()
        self.bytes_sent += len(data)

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
    ) -> bytes:
        """Read one 255-byte response: STX, trailer and CRC checked; resyncs on noise.

        Raises EkmNoResponseError if nothing arrived in ``first_byte_timeout``, the last
        validation error (EkmCrcError / EkmProtocolError) if bytes arrived but no valid
        frame did within ``frame_timeout``, EkmConnectionError if the port went away.
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
            limit = deadline if got_any else min(first_deadline, deadline)
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

    async def wait_quiet(self, seconds: float) -> None:
        """Sleep, then drop anything received meanwhile (a late or stray answer)."""
        if seconds > 0:
            await asyncio.sleep(seconds)
        self.discard_input()
