"""Push updates from EKM's MQTT broker (Push3 gateways only), on aiomqtt.

EKM's broker (``mqtts://mqtts.ekmpush.com:8883``) speaks MQTT 3.1.1 over TLS. The
username is a gateway key, there is no password, and each gateway publishes on
``realtime/<gateway key>`` and ``summary/<gateway key>``. A payload is a JSON object whose
keys are ``meter_<12-digit address>``; values may be numbers or numeric strings.

:class:`EkmPushStream` keeps ONE connection per broker for one or more gateway keys (the
first key is the username), subscribes at QoS 0 and turns each message into events:
:class:`~.models.MeterReading` (``Source.MQTT``) for realtime messages and
:class:`SummaryReading` for summary messages. Bad payloads are skipped, never raised.

Three ways to use it:

* ``async with stream.connect() as events: async for event in events: ...``
* ``await stream.run(on_event, on_connect=...)``: one connection, raises when it ends;
* ``await stream.run_forever(on_event, on_connect=..., on_disconnect=...)``: reconnects
  with :class:`Backoff` and reports connected/disconnected transitions. Run it as a
  background task and cancel it to stop; it unsubscribes and disconnects on the way out.

Gateway keys are secrets and also part of the topics: no key or topic ever reaches a log
record or an exception message (paho's own debug log is redacted too). Keys are named by
their position and masked form, e.g. ``gateway key #2 (…b0c1)``.

EKM keeps no message history: after a reconnect the caller fills the gap via REST.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
import inspect
import json
import logging
import math
import os
import random
import re
import ssl
from typing import Any, Final, NoReturn, override
from urllib.parse import urlsplit
import uuid

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from aiomqtt.types import PahoSocket
import paho.mqtt.client as paho

from .catalog import Value, convert, normalize_address, to_number
from .errors import EkmAuthError, EkmConnectionError, EkmError
from .models import MeterReading, Source, now_ms
from .redact import mask, redact_text

_LOGGER = logging.getLogger(__name__)

DEFAULT_MQTT_SERVER: Final = "mqtts://mqtts.ekmpush.com:8883"
DEFAULT_MQTT_PORT: Final = 8883
KEEPALIVE: Final = 60
# Largest payload parsed; EKM documents none. 100 meters of ~60 fields is ~150 KiB.
MAX_PAYLOAD: Final = 256 * 1024
# Seconds for TCP + TLS + CONNACK (and for SUBACK).
CONNECT_TIMEOUT: Final = 20.0
# Seconds allowed for UNSUBSCRIBE/DISCONNECT on the way out.
CLOSE_TIMEOUT: Final = 5.0
# Messages buffered between paho and the consumer before new ones are dropped.
MAX_QUEUED_MESSAGES: Final = 10_000

_METER_KEY: Final = re.compile(r"meter_(\d{1,12})")
# CONNACK codes meaning "bad credentials": MQTT 3.1.1 (4, 5) and as paho reports them.
_AUTH_CODES: Final = frozenset({4, 5, 134, 135})
# Per-meter keys that describe the message rather than the read (not reading values).
_ENVELOPE: Final = frozenset({"Meter", "Protocol"})


class MessageKind(StrEnum):
    """The topic a message came on."""

    REALTIME = "realtime"
    SUMMARY = "summary"


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryReading:
    """One meter's 15-minute summary pushed on ``summary/<gateway key>``.

    ``values`` holds the summary fields as sent (``kWh_Tot_Diff``,
    ``RMS_Volts_Ln_1_Average``, ...), numbers converted from strings.
    """

    address: str
    start_ms: int | None
    end_ms: int | None
    received_ms: int
    values: Mapping[str, Value]
    source: Source = Source.MQTT


type PushEvent = MeterReading | SummaryReading
type EventCallback = Callable[[PushEvent], Awaitable[None] | None]
type ConnectCallback = Callable[[], Awaitable[None] | None]
type DisconnectCallback = Callable[[EkmError], Awaitable[None] | None]


class EkmGatewayKeyError(EkmAuthError):
    """The broker refused a gateway key (CONNACK or SUBACK). ``key_index`` is 0-based."""

    def __init__(self, key_index: int, key: str, what: str) -> None:
        self.key_index = key_index
        super().__init__(f"The EKM MQTT broker {what} gateway key #{key_index + 1} ({mask(key)})")


# --- TLS ---------------------------------------------------------------------------------


def create_ssl_context(ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """Build a verifying client TLS context: system CAs, plus ``ca_file`` (tests, dev).

    This loads certificate files, which blocks: call it off the event loop, e.g.
    ``await loop.run_in_executor(None, create_ssl_context)``. In Home Assistant, prefer
    ``homeassistant.util.ssl.get_default_context()``.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


def parse_server(url: str) -> tuple[str, int]:
    """Return host and port of an ``mqtts://host[:port]`` URL (TLS is mandatory)."""
    parts = urlsplit(url if "://" in url else f"mqtts://{url}")
    if parts.scheme.lower() != "mqtts" or not parts.hostname:
        raise ValueError("The MQTT server must be an mqtts://host[:port] URL")
    if parts.username or parts.password or parts.path not in ("", "/"):
        raise ValueError("The MQTT server URL takes only a host and a port")
    try:
        port = parts.port or DEFAULT_MQTT_PORT
    except ValueError:
        raise ValueError("The MQTT server URL has an invalid port") from None
    return parts.hostname, port


# --- Backoff -----------------------------------------------------------------------------


class Backoff:
    """Exponential backoff with jitter; :meth:`reset` after a success.

    Delay *n* (0-based) is ``min(maximum, initial * factor**n)`` scaled by a random factor
    in ``[1 - jitter, 1]``, so that many clients do not reconnect in step.
    """

    def __init__(
        self,
        initial: float = 1.0,
        maximum: float = 300.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if initial < 0 or maximum < initial or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("Invalid backoff parameters")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt, and count the attempt."""
        base = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return base * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from ``initial`` (call after a success)."""
        self.attempts = 0

    async def wait(self) -> float:
        """Sleep for :meth:`next_delay` seconds; returns the delay."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay


# --- Payload parsing ---------------------------------------------------------------------


def parse_payload(
    kind: MessageKind,
    payload: bytes | str,
    *,
    received_ms: int | None = None,
    max_payload: int = MAX_PAYLOAD,
) -> list[PushEvent]:
    """Parse one message body into events; anything unusable is skipped (debug log).

    Realtime: one :class:`MeterReading` per ``meter_<address>`` key whose value is an
    object (reads with ``Good`` = 0 are dropped); the timestamp is ``Time_Stamp_UTC_ms``
    when present, else ``received_ms``. Summary: one :class:`SummaryReading` per meter.
    """
    received = now_ms() if received_ms is None else received_ms
    if len(payload) > max_payload:
        _LOGGER.debug("Skipped an MQTT %s message of %d bytes (too large)", kind, len(payload))
        return []
    try:
        data = json.loads(payload)
    except ValueError:
        _LOGGER.debug("Skipped an MQTT %s message that is not JSON", kind)
        return []
    if not isinstance(data, dict):
        _LOGGER.debug("Skipped an MQTT %s message that is not a JSON object", kind)
        return []
    events: list[PushEvent] = []
    for name, raw in data.items():
        match = _METER_KEY.fullmatch(name) if isinstance(name, str) else None
        if match is None or not isinstance(raw, dict):
            _LOGGER.debug("Skipped an entry of an MQTT %s message (%.40r)", kind, name)
            continue
        address = normalize_address(match.group(1))
        if kind is MessageKind.REALTIME:
            reading = _realtime(address, raw, received)
            if reading is not None:
                events.append(reading)
        else:
            events.append(_summary(address, raw, received))
    return events


def _realtime(address: str, raw: Mapping[str, Any], received_ms: int) -> MeterReading | None:
    if "Good" in raw and to_number(raw["Good"]) != 1:
        _LOGGER.debug("Skipped a failed read of meter %s in an MQTT message", address)
        return None
    stamp = to_number(raw.get("Time_Stamp_UTC_ms"))
    protocol = raw.get("Protocol")
    reading = MeterReading.from_raw(
        address,
        {name: value for name, value in raw.items() if name not in _ENVELOPE},
        Source.MQTT,
        timestamp_ms=int(stamp) if stamp is not None and stamp > 0 else received_ms,
        protocol=protocol.strip().lower() if isinstance(protocol, str) and protocol else None,
    )
    if not reading.has_measurements:
        _LOGGER.debug("Skipped an MQTT entry of meter %s with no usable value", address)
        return None
    return reading


def _summary(address: str, raw: Mapping[str, Any], received_ms: int) -> SummaryReading:
    values: dict[str, Value] = {}
    for name, raw_value in raw.items():
        value = convert(name, raw_value)
        if value is not None:
            values[name] = value
    start = to_number(raw.get("Start_Time_Stamp_UTC_ms"))
    end = to_number(raw.get("End_Time_Stamp_UTC_ms"))
    return SummaryReading(
        address=address,
        start_ms=int(start) if start is not None else None,
        end_ms=int(end) if end is not None else None,
        received_ms=received_ms,
        values=values,
    )


# --- Statistics --------------------------------------------------------------------------


@dataclass(slots=True)
class PushStats:
    """Counters for diagnostics and benchmarks."""

    connects: int = 0
    disconnects: int = 0
    messages: int = 0
    readings: int = 0
    summaries: int = 0
    skipped_messages: int = 0


# --- The stream --------------------------------------------------------------------------


class EkmPushStream:
    """One MQTT connection to an EKM broker, subscribed for one or more gateway keys.

    ``ssl_context`` should be a verifying context created off the event loop; without one
    the stream builds :func:`create_ssl_context` in the default executor. ``summary``
    chooses whether ``summary/<key>`` is subscribed too.

    Whether EKM's broker lets one username subscribe to several gateways' topics is not
    documented; if it refuses (SUBACK failure) :class:`EkmGatewayKeyError` names the key,
    and the caller can use one stream per key instead.
    """

    def __init__(
        self,
        gateway_keys: str | Sequence[str],
        *,
        server: str = DEFAULT_MQTT_SERVER,
        ssl_context: ssl.SSLContext | None = None,
        summary: bool = True,
        keepalive: int = KEEPALIVE,
        max_payload: int = MAX_PAYLOAD,
        connect_timeout: float = CONNECT_TIMEOUT,
        client_id: str | None = None,
    ) -> None:
        keys = [gateway_keys] if isinstance(gateway_keys, str) else list(gateway_keys)
        keys = [key.strip() for key in keys]
        if not keys or not all(keys):
            raise ValueError("At least one non-empty gateway key is required")
        if len(set(keys)) != len(keys):
            raise ValueError("A gateway key is listed twice")
        self._keys: tuple[str, ...] = tuple(keys)
        self._host, self._port = parse_server(server)
        self._ssl_context = ssl_context
        self._keepalive = keepalive
        self._max_payload = max_payload
        self._connect_timeout = connect_timeout
        self._client_id = client_id or f"ekm-ha-{uuid.uuid4().hex[:12]}"
        kinds = (MessageKind.REALTIME, MessageKind.SUMMARY) if summary else (MessageKind.REALTIME,)
        # topic -> (kind, key index); topics contain keys and must never be logged.
        self._topics: dict[str, tuple[MessageKind, int]] = {
            f"{kind}/{key}": (kind, index) for index, key in enumerate(keys) for kind in kinds
        }
        self._connected = False
        self.stats = PushStats()
        self.last_error: EkmError | None = None

    @property
    def server(self) -> str:
        """The broker URL (contains no secret)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"mqtts://{host}:{self._port}"

    @property
    def key_count(self) -> int:
        """How many gateway keys this stream subscribes for."""
        return len(self._keys)

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        return self._connected

    def __repr__(self) -> str:
        return f"EkmPushStream({self.server}, {len(self._keys)} gateway key(s))"

    # --- one connection -------------------------------------------------------------------

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncIterator[PushEvent]]:
        """Connect, subscribe, and give an async iterator of events.

        Raises :class:`EkmGatewayKeyError` (an :class:`EkmAuthError`) when the broker
        refuses a key and :class:`EkmConnectionError` for network/TLS failures or when
        the connection is lost while iterating. Leaving the block (also by cancellation)
        unsubscribes and disconnects.
        """
        context = self._ssl_context
        if context is None:
            context = await asyncio.get_running_loop().run_in_executor(None, create_ssl_context)
        logger = _RedactingLogger(f"{__name__}.paho", self._keys)
        client = _Client(
            self._host,
            self._port,
            username=self._keys[0],
            password=None,
            identifier=self._client_id,
            logger=logger,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            keepalive=self._keepalive,
            timeout=self._connect_timeout,
            tls_context=context,
            max_queued_incoming_messages=MAX_QUEUED_MESSAGES,
        )
        await self._enter(client)
        try:
            await self._subscribe(client)
            self._connected = True
            self.stats.connects += 1
            yield _EventIterator(self, client.messages)
        finally:
            self._connected = False
            logger.closing = True
            await self._close(client)

    async def _enter(self, client: _Client) -> None:
        # aiomqtt connects in an executor thread; if we are cancelled meanwhile, let that
        # finish and disconnect, or its socket and housekeeping task would be left behind.
        attempt = asyncio.create_task(client.__aenter__())
        try:
            await asyncio.shield(attempt)
        except asyncio.CancelledError:
            with suppress(Exception):
                await attempt
                await client.__aexit__(None, None, None)
            raise
        except MqttConnectError as err:
            code = err.rc if isinstance(err.rc, int) else getattr(err.rc, "value", None)
            if code in _AUTH_CODES:
                raise EkmGatewayKeyError(0, self._keys[0], "rejected") from None
            raise EkmConnectionError(
                f"The EKM MQTT broker refused the connection ({self._safe(str(err))})"
            ) from None
        except aiomqtt.MqttError as err:
            raise EkmConnectionError(
                f"Cannot connect to the EKM MQTT broker at {self.server} ({self._safe(str(err))})"
            ) from None

    async def _subscribe(self, client: _Client) -> None:
        """Subscribe to every topic in one SUBSCRIBE; the caller closes on failure."""
        topics = list(self._topics)
        try:
            granted = await client.subscribe([(topic, 0) for topic in topics])
        except aiomqtt.MqttError as err:
            raise EkmConnectionError(
                f"Subscribing on the EKM MQTT broker failed ({self._safe(str(err))})"
            ) from None
        codes = [code if isinstance(code, int) else int(code.value) for code in granted]
        for topic, code in zip(topics, codes, strict=False):
            if code >= 0x80:
                index = self._topics[topic][1]
                raise EkmGatewayKeyError(index, self._keys[index], "refused the topics of")

    async def _close(self, client: _Client) -> None:
        """Unsubscribe and disconnect, best effort and bounded (also when cancelled).

        A connection lost meanwhile (the broker going down with us) ends the wait for the
        UNSUBACK at once. The disconnect runs even when a second cancellation arrives,
        and the UNSUBSCRIBE stays pending until the connection is closed, so that a late
        UNSUBACK still finds it (aiomqtt logs an unknown one as an error).
        """
        unsubscribe = asyncio.ensure_future(
            client.unsubscribe(list(self._topics), timeout=math.inf)
        )
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.until_lost(unsubscribe)
        finally:
            with suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.__aexit__(None, None, None)
            unsubscribe.cancel()
            if unsubscribe.done() and not unsubscribe.cancelled():
                unsubscribe.exception()  # best effort: its error does not matter
            client.forget_loss()

    def _handle(self, message: aiomqtt.Message) -> list[PushEvent]:
        received = now_ms()
        self.stats.messages += 1
        route = self._topics.get(message.topic.value)
        payload = message.payload  # bytes, as paho delivers it
        if route is None or not payload:
            self.stats.skipped_messages += 1
            _LOGGER.debug("Skipped an MQTT message on an unexpected topic or without a body")
            return []
        kind, _index = route
        events = parse_payload(
            kind,
            payload,
            received_ms=received,
            max_payload=self._max_payload,
        )
        if not events:
            self.stats.skipped_messages += 1
        elif kind is MessageKind.REALTIME:
            self.stats.readings += len(events)
        else:
            self.stats.summaries += len(events)
        return events

    def _safe(self, text: str) -> str:
        return redact_text(text, self._keys)

    # --- callback loops ------------------------------------------------------------------

    async def run(
        self,
        on_event: EventCallback,
        *,
        on_connect: ConnectCallback | None = None,
    ) -> NoReturn:
        """Run ONE connection, calling ``on_event`` for each event.

        ``on_connect`` runs once connected and subscribed. Never returns: raises
        :class:`EkmConnectionError` when the connection ends, :class:`EkmAuthError`
        when a key is refused. Callback exceptions are logged, not raised.
        """
        async with self.connect() as events:
            await _call(on_connect)
            async for event in events:
                await _call(on_event, event)
        raise EkmConnectionError("The EKM MQTT stream ended")  # pragma: no cover

    async def run_forever(
        self,
        on_event: EventCallback,
        *,
        on_connect: ConnectCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        backoff: Backoff | None = None,
    ) -> NoReturn:
        """Stay connected until cancelled, reconnecting with ``backoff``.

        ``on_connect()`` is called at every connection (the caller backfills the gap
        via REST), ``on_disconnect(error)`` when an established connection is lost;
        failed attempts while disconnected only log at debug level. The backoff is
        reset at every successful connection. A refused key ends the loop with
        :class:`EkmGatewayKeyError` (start a reauth). Cancel the task to stop: the
        connection is closed cleanly and no callback is called.
        """
        backoff = backoff or Backoff()
        was_connected = False

        async def connected() -> None:
            nonlocal was_connected
            was_connected = True
            backoff.reset()
            self.last_error = None
            await _call(on_connect)

        while True:
            try:
                await self.run(on_event, on_connect=connected)
            except EkmAuthError as err:
                self.last_error = err
                raise
            except EkmConnectionError as err:
                self.last_error = err
                if was_connected:
                    was_connected = False
                    self.stats.disconnects += 1
                    _LOGGER.debug("Lost the connection to %s: %s", self.server, err)
                    await _call(on_disconnect, err)
                else:
                    _LOGGER.debug("Connecting to %s failed: %s", self.server, err)
            await backoff.wait()


class _Client(aiomqtt.Client):
    """aiomqtt's client, with paho's socket writer registered safely (issue 10, item 7).

    aiomqtt 2.5 always defers ``loop.add_writer`` through ``call_soon_threadsafe`` (paho
    may ask from the executor thread that connects), while paho removes the writer and
    closes its socket at once. When the broker drops the connection in the loop
    iteration in which a packet was queued (the UNSUBSCRIBE at shutdown, while the
    broker goes down too), the late ``add_writer`` reaches a closed descriptor:
    "Exception in callback BaseSelectorEventLoop.add_writer()", ``OSError: [Errno 9]``
    (or, had the number been reused, it would watch somebody else's socket). So the
    writer is added at once on the loop thread, and from another thread only if paho
    still has that socket open when the loop gets to it.
    """

    @override
    def _on_socket_register_write(
        self, client: paho.Client, userdata: Any, sock: PahoSocket
    ) -> None:
        def on_writable() -> None:
            # As aiomqtt's: a failed write means the connection is lost.
            try:
                client.loop_write()
            except Exception as exc:
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            fileno = sock.fileno()  # -1 once closed
            if fileno >= 0 and client.socket() is sock:
                self._loop.add_writer(fileno, on_writable)

        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            register()
        else:
            self._loop.call_soon_threadsafe(register)

    async def until_lost(self, request: asyncio.Future[Any]) -> None:
        """Wait for ``request`` unless the connection is lost first (no answer comes then).

        aiomqtt's unsubscribe waits for its UNSUBACK even when the connection is gone.
        """
        await asyncio.wait((request, self._disconnected), return_when=asyncio.FIRST_COMPLETED)

    def forget_loss(self) -> None:
        """Mark the error of a connection lost while closing as seen.

        aiomqtt's ``__aexit__`` returns early on a lost connection without reading it, and
        asyncio would report "Future exception was never retrieved" when it is collected.
        """
        lost = self._disconnected
        if lost.done() and not lost.cancelled():
            lost.exception()


class _EventIterator:
    """Events of one connection; raises EkmConnectionError when it is lost."""

    def __init__(self, stream: EkmPushStream, messages: aiomqtt.client.MessagesIterator) -> None:
        self._stream = stream
        self._messages = messages
        self._pending: deque[PushEvent] = deque()

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> PushEvent:
        while not self._pending:
            try:
                message = await anext(self._messages)
            except aiomqtt.MqttError:
                self._stream._connected = False
                raise EkmConnectionError("Lost the connection to the EKM MQTT broker") from None
            self._pending.extend(self._stream._handle(message))
        return self._pending.popleft()


async def _call(callback: Callable[..., Awaitable[None] | None] | None, *args: Any) -> None:
    """Call a sync or async callback; log (not raise) its errors."""
    if callback is None:
        return
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        _LOGGER.exception("Error in an EKM push callback")


class _RedactingLogger(logging.Logger):
    """The logger handed to aiomqtt/paho: formats each record and removes the keys.

    Not registered with the logging manager; it forwards to this module's logger.
    """

    def __init__(self, name: str, secrets: Sequence[str]) -> None:
        super().__init__(name)
        self.parent = _LOGGER
        self._secrets = tuple(secrets)
        # Set once the stream closes the connection: paho's and aiomqtt's complaints
        # about it then (a broker going down at the same time resets the socket) are
        # expected, and logged at debug level.
        self.closing = False

    @override
    def isEnabledFor(self, level: int) -> bool:
        # No cache: the logging manager does not clear it for unregistered loggers.
        return not self.disabled and level >= self.getEffectiveLevel()

    @override
    def makeRecord(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = super().makeRecord(*args, **kwargs)
        record.msg = redact_text(record.getMessage(), self._secrets)
        record.args = None
        if self.closing and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return record

    @override
    def handle(self, record: logging.LogRecord) -> None:
        if self.isEnabledFor(record.levelno):  # a record demoted while closing
            super().handle(record)


__all__ = [
    "DEFAULT_MQTT_SERVER",
    "MAX_PAYLOAD",
    "Backoff",
    "EkmGatewayKeyError",
    "EkmPushStream",
    "MessageKind",
    "PushEvent",
    "PushStats",
    "SummaryReading",
    "create_ssl_context",
    "parse_payload",
    "parse_server",
]
