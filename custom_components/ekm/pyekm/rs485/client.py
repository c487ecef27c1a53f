"""``EkmBus``: sessions with the Omnimeters on one RS-485 line.

One ``EkmBus`` per port. Every session (a read, or a write) holds the bus lock from its
first request to its close string, so two meters' exchanges never interleave:

* read v3:    request → 255 bytes → close
* read v4/v5: request A → 255 bytes [→ request B → 255 bytes] → close
* write:      request → 255 bytes → P1 password → ACK → W1 → ACK → close

Request B is sent on the first read of a meter and then once every ``b_every`` reads
(its fields change slowly: tariffs, max demand, ratios); the cached B frame is merged
into every reading. Settings writes invalidate that cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
import logging
from types import TracebackType
from typing import Final, Self

from ..catalog import normalize_address
from ..errors import (
    EkmCommandError,
    EkmConnectionError,
    EkmError,
    EkmNoResponseError,
    EkmPasswordError,
    EkmProtocolError,
    EkmUnsupportedError,
)
from ..models import MeterReading, now_ms
from . import protocol as p
from .protocol import Request
from .transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    INTER_FRAME_GAP,
    Framing,
    SerialLine,
)

_LOGGER = logging.getLogger(__name__)

# MT-QT's heuristic (§2.3): serial numbers from 300000000 up are v4/v5. Only used to pick
# which request to try first for a meter whose model is not known yet.
_V4_ADDRESS_FLOOR: Final = 300_000_000


@dataclass(slots=True)
class _MeterState:
    """What the bus remembers about one address."""

    protocol: str | None = None
    b_frame: bytes | None = None
    reads_since_b: int = 0


@dataclass(slots=True)
class BusStats:
    """Counters for diagnostics and benchmarks."""

    sessions: int = 0
    requests: int = 0
    a_frames: int = 0
    b_frames: int = 0
    v3_frames: int = 0
    retries: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    reconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class EkmBus:
    """The meters on one RS-485 port (``/dev/ttyUSB0``, ``socket://h:p``, ``rfc2217://``).

    Args:
        port: a serial device path or a serialx URL.
        password: the default 8-digit meter password for writes (never logged).
        b_every: read request B on the first read and then every ``b_every`` reads.
        retries: extra attempts after a timeout or a bad frame (each restarts from the
            request).
        response_timeout: seconds to the first byte of a response.
        frame_timeout: seconds from sending a request to a complete response.
        ack_timeout: seconds to wait for the ACK to P1 / W1.
        gap: seconds of silence on the line before each frame we send, counted from the
            line's last byte either way (see transport.INTER_FRAME_GAP).
        idle_timeout: seconds of silence after which a partial or bad response is given up.
        connect_timeout: seconds to open the port.
        framing: '7E1', '8N1' (7E1 emulated: parity in software), or 'auto' (7E1, falling
            back to emulated 8N1 when the port refuses 7E1).
        protocols: known protocols by address ('v3' or 'v4'), skipping detection.

    """

    def __init__(
        self,
        port: str,
        *,
        password: str = p.DEFAULT_PASSWORD,
        b_every: int = 10,
        retries: int = 2,
        response_timeout: float = 1.0,
        frame_timeout: float = 1.5,
        ack_timeout: float = 1.0,
        gap: float = INTER_FRAME_GAP,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        framing: Framing = "auto",
        protocols: Mapping[str, str] | None = None,
    ) -> None:
        p.password_frame(password)  # validates without echoing it
        if b_every < 1:
            raise ValueError("b_every must be at least 1")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self._line = SerialLine(port, connect_timeout=connect_timeout, framing=framing)
        self._password = password
        self._b_every = b_every
        self._retries = retries
        self._response_timeout = response_timeout
        self._frame_timeout = max(frame_timeout, response_timeout)
        self._ack_timeout = ack_timeout
        self._gap = gap
        self._idle_timeout = idle_timeout
        self._lock = asyncio.Lock()
        self._meters: dict[str, _MeterState] = {}
        self._ever_opened = False
        self.stats = BusStats()
        for address, protocol in (protocols or {}).items():
            self._state(normalize_address(address)).protocol = _check_protocol(protocol)

    def __repr__(self) -> str:
        return f"<EkmBus {self._line.safe_url}>"

    @property
    def port(self) -> str:
        """The port, with any secret in a URL redacted."""
        return self._line.safe_url

    @property
    def line(self) -> SerialLine:
        """The underlying line (byte counters, state)."""
        return self._line

    @property
    def connected(self) -> bool:
        """Whether the port is open right now."""
        return self._line.is_open

    def protocol(self, address: str | int) -> str | None:
        """The detected protocol of a meter ('v3' or 'v4'), None until first contact."""
        state = self._meters.get(normalize_address(address))
        return state.protocol if state else None

    async def connect(self) -> None:
        """Open the port now (otherwise the first session opens it)."""
        async with self._lock:
            await self._ensure_open()

    async def close(self) -> None:
        """Close the port; the next session reopens it."""
        async with self._lock:
            await self._line.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- reads ----------------------------------------------------------------------------

    async def read(self, address: str | int) -> MeterReading:
        """One reading of one meter (v3: one request; v4/v5: A, plus B now and then).

        ``999999999999`` reads the only meter on the bus; the reading carries its real
        address. Raises EkmNoResponseError (silence), EkmProtocolError / EkmCrcError
        (bad frames after every retry) or EkmConnectionError (port unavailable).
        """
        addr = normalize_address(address)
        return await self._session(lambda: self._read_session(addr))

    async def detect(self, address: str | int) -> str:
        """Contact a meter and return its protocol ('v3' or 'v4'); cached per address."""
        addr = normalize_address(address)

        async def run() -> str:
            protocol, _ = await self._select(addr)
            return protocol

        return await self._session(run)

    async def _read_session(self, addr: str) -> MeterReading:
        state = self._state(addr)
        protocol, frame = await self._select(addr)
        stamp = now_ms()
        if protocol == "v3":
            return p.parse_v3(frame, timestamp_ms=stamp)
        state.reads_since_b += 1
        if state.b_frame is None or state.reads_since_b >= self._b_every:
            real = frame[4:16].decode()
            # With a cached B, one try is enough; without, one retry (as ekmmeters does).
            retries = 0 if state.b_frame is not None else min(self._retries, 1)
            try:
                b_frame = await self._request(addr, Request.B, expect_address=real, retries=retries)
            except (EkmNoResponseError, EkmProtocolError) as err:
                _LOGGER.debug("Request B to %s failed (%s); using the cached B", addr, err)
            else:
                state.b_frame = b_frame
                state.reads_since_b = 0
        try:
            return p.parse_v4(frame, state.b_frame, timestamp_ms=stamp)
        except EkmProtocolError:
            if state.b_frame is None:
                raise
            state.b_frame = None  # a cached B from another meter (wildcard) or stale
            return p.parse_v4(frame, timestamp_ms=stamp)

    # --- writes ---------------------------------------------------------------------------

    async def set_relay(
        self,
        address: str | int,
        relay: int,
        closed: bool,
        duration_s: int = 0,
        *,
        password: str | None = None,
    ) -> None:
        """Close (on) or open (off) relay 1 or 2, held (0) or for 1-9999 s (v4/v5 only)."""
        frame = p.relay_frame(relay, closed, duration_s)
        await self._write(address, frame, password, v4_only=True, b_fields=False)

    async def set_time(
        self, address: str | int, when: datetime | None = None, *, password: str | None = None
    ) -> None:
        """Set the meter clock (default: this computer's local time, weekday Sun = 01)."""
        frame = p.set_time_frame(when if when is not None else datetime.now())
        await self._write(address, frame, password, v4_only=False, b_fields=False)

    async def zero_resettable_kwh(self, address: str | int, *, password: str | None = None) -> None:
        """Zero kWh_Rst and Rev_kWh_Rst (v4/v5 only)."""
        frame = p.zero_resettable_frame()
        await self._write(address, frame, password, v4_only=True, b_fields=False)

    async def reset_max_demand(self, address: str | int, *, password: str | None = None) -> None:
        """Reset the max demand now."""
        frame = p.reset_max_demand_frame()
        await self._write(address, frame, password, v4_only=False, b_fields=True)

    async def set_ct_ratio(
        self, address: str | int, ratio: int, *, password: str | None = None
    ) -> None:
        """Set the CT ratio (100 ... 5000, see catalog.CT_RATIOS)."""
        frame = p.ct_ratio_frame(ratio)
        await self._write(address, frame, password, v4_only=False, b_fields=True)

    async def set_pulse_input_ratio(
        self, address: str | int, pulse_input: int, ratio: int, *, password: str | None = None
    ) -> None:
        """Set the ratio of pulse input 1, 2 or 3 (1-9999; v4/v5 only)."""
        frame = p.pulse_input_ratio_frame(pulse_input, ratio)
        await self._write(address, frame, password, v4_only=True, b_fields=True)

    async def set_pulse_output_ratio(
        self, address: str | int, ratio: int, *, password: str | None = None
    ) -> None:
        """Set the kWh pulse-output constant CF_Ratio (v4/v5 only)."""
        frame = p.pulse_output_ratio_frame(ratio)
        await self._write(address, frame, password, v4_only=True, b_fields=True)

    async def set_max_demand_period(
        self, address: str | int, period: int, *, password: str | None = None
    ) -> None:
        """Set the max-demand period: 1 = 15 min, 2 = 30 min, 3 = 60 min."""
        frame = p.max_demand_period_frame(period)
        await self._write(address, frame, password, v4_only=False, b_fields=True)

    async def set_max_demand_auto_reset(
        self, address: str | int, interval: int, *, password: str | None = None
    ) -> None:
        """Set max-demand auto reset: 0 off, 1 monthly, 2 weekly, 3 daily, 4 hourly (v4/v5)."""
        frame = p.max_demand_auto_reset_frame(interval)
        await self._write(address, frame, password, v4_only=True, b_fields=True)

    async def _write(
        self,
        address: str | int,
        command: bytes,
        password: str | None,
        *,
        v4_only: bool,
        b_fields: bool,
    ) -> None:
        addr = normalize_address(address)
        login = p.password_frame(self._password if password is None else password)
        state = self._state(addr)
        if v4_only and state.protocol == "v3":
            raise EkmUnsupportedError(f"Meter {addr} is a v3 Omnimeter: not supported")
        code = command[4:8].decode()

        async def run() -> None:
            protocol, _ = await self._select(addr)
            if v4_only and protocol == "v3":
                raise EkmUnsupportedError(f"Meter {addr} is a v3 Omnimeter: not supported")
            if await self._exchange_ack(login) != p.ACK:
                raise EkmPasswordError(f"Meter {addr} refused the password")
            if await self._exchange_ack(command) != p.ACK:
                raise EkmCommandError(f"Meter {addr} did not acknowledge command {code}")

        await self._session(run)
        if b_fields:
            state.b_frame = None  # read B again on the next read

    # --- session machinery ------------------------------------------------------------------

    def _state(self, addr: str) -> _MeterState:
        return self._meters.setdefault(addr, _MeterState())

    async def _session[T](self, body: Callable[[], Awaitable[T]]) -> T:
        """Run one session under the bus lock; the close string is always sent."""
        async with self._lock:
            self.stats.sessions += 1
            try:
                return await body()
            finally:
                await self._send_close()

    async def _ensure_open(self) -> None:
        if self._line.is_open:
            return
        if self._ever_opened:
            self.stats.reconnects += 1
        await self._line.open()
        self._ever_opened = True

    async def _send(self, data: bytes) -> None:
        """Send after ``gap`` s of silence on the line (stale input is dropped)."""
        await self._line.wait_silence(self._gap, limit=self._frame_timeout)
        await self._line.write(data)

    async def _send_close(self) -> None:
        """The close string ends every session; a lost port is not an error here."""
        if not self._line.is_open:
            return
        try:
            await self._send(p.CLOSE)
        except EkmConnectionError:
            await self._line.close()

    def _count_error(self, err: EkmError) -> None:
        name = type(err).__name__
        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1

    async def _select(self, addr: str) -> tuple[str, bytes]:
        """The first request of a session; detects the protocol on first contact."""
        state = self._state(addr)
        if state.protocol is not None:
            kind = Request.V3 if state.protocol == "v3" else Request.A
            return state.protocol, await self._request(addr, kind)
        if addr == p.WILDCARD or int(addr) >= _V4_ADDRESS_FLOOR:
            order = (Request.A, Request.V3)
        else:
            order = (Request.V3, Request.A)
        silent: EkmNoResponseError | None = None
        garbled: EkmProtocolError | None = None
        for attempt in range(self._retries + 2):
            kind = order[attempt % 2]
            try:
                frame = await self._request(addr, kind, retries=0)
            except EkmNoResponseError as err:
                silent = err
                continue
            except EkmProtocolError as err:
                garbled = err
                continue
            protocol = p.frame_protocol(frame, kind)
            _LOGGER.debug("Meter %s speaks %s (model %s)", addr, protocol, p.frame_model(frame))
            return protocol, frame
        # Something answered but never cleanly: that says more than the silence.
        error = garbled or silent
        assert error is not None
        raise error

    async def _request(
        self,
        addr: str,
        kind: Request,
        *,
        expect_address: str | None = None,
        retries: int | None = None,
    ) -> bytes:
        """Send one data request and return its validated 255-byte answer (with retries)."""
        state = self._state(addr)
        request = p.request_frame(addr, kind)
        attempts = (self._retries if retries is None else retries) + 1
        last: EkmError | None = None
        for attempt in range(attempts):
            if attempt:
                self.stats.retries += 1
            try:
                await self._ensure_open()
                await self._send(request)
                self.stats.requests += 1
                frame = await self._line.read_frame(
                    echo=request,
                    first_byte_timeout=self._response_timeout,
                    frame_timeout=self._frame_timeout,
                    idle_timeout=self._idle_timeout,
                )
                p.validate_frame(frame, address=expect_address or addr)
                protocol = p.frame_protocol(frame, kind)
                if protocol == "v4":
                    p.validate_frame(frame, request=Request.B if kind is Request.B else Request.A)
            except EkmNoResponseError as err:
                self.stats.timeouts += 1
                self._count_error(err)
                last = err
                continue
            except EkmProtocolError as err:
                self.stats.bad_frames += 1
                self._count_error(err)
                last = err
                continue
            except EkmConnectionError as err:
                self._count_error(err)
                await self._line.close()
                if attempt + 1 >= attempts:
                    raise
                last = err
                continue
            state.protocol = protocol
            if protocol == "v3":
                self.stats.v3_frames += 1
            elif kind is Request.B:
                self.stats.b_frames += 1
            else:
                self.stats.a_frames += 1
            return frame
        assert last is not None
        raise last

    async def _exchange_ack(self, frame: bytes) -> int | None:
        """Send P1 or W1 and return the ACK/NAK byte, None on silence."""
        await self._send(frame)
        return await self._line.read_ack(echo=frame, wait=self._ack_timeout)


def _check_protocol(protocol: str) -> str:
    value = protocol.lower()
    if value == "v5":
        value = "v4"
    if value not in ("v3", "v4"):
        raise ValueError("protocol must be 'v3', 'v4' or 'v5'")
    return value
