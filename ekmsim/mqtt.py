"""A simulated EKM MQTT broker: MQTT 3.1.1 over TLS with a test CA made at runtime.

The broker is a small asyncio implementation written for the simulator (CONNECT/CONNACK
with a username check, SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PUBLISH at QoS 0 fan-out,
PINGREQ/PINGRESP, DISCONNECT), so that every fault is under our control:

* :meth:`MqttSimulator.stop_broker` / :meth:`~MqttSimulator.start_broker`: drop every
  connection and refuse new ones, then listen again on the same port;
* :meth:`MqttSimulator.reject_key`: CONNACK "not authorized" for that username and
  SUBACK failure for its topics;
* :meth:`MqttSimulator.publish_raw` / :meth:`~MqttSimulator.publish_faults`: arbitrary,
  malformed and oversized payloads.

:class:`MqttSimulator` listens to a :class:`~ekmsim.fleet.Fleet` and publishes each new
read on ``realtime/<gateway key>`` (one message per gateway holding all of its meters)
and, every 15 simulated minutes, a summary on ``summary/<gateway key>``.

The CA is trusted only by whoever is given :attr:`MqttSimulator.ca_file` (tests, dev).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import ipaddress
import json
import logging
from pathlib import Path
import shutil
import ssl
import struct
import tempfile
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import summary
from .fleet import Fleet, Read, ReadBatch, SimMeter

_LOGGER = logging.getLogger(__name__)

MAX_PACKET: Final = 4 * 1024 * 1024  # largest packet the broker accepts or sends
SUMMARY_PERIOD_S: Final = 900

# CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
CONNACK_ACCEPTED: Final = 0
CONNACK_BAD_PROTOCOL: Final = 1
CONNACK_SERVER_UNAVAILABLE: Final = 3
CONNACK_BAD_USERNAME: Final = 4
CONNACK_NOT_AUTHORIZED: Final = 5

type ValueStyle = Literal["mixed", "numbers", "strings"]


# --- test CA -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestCerts:
    """Paths of a generated CA and the broker's certificate and key."""

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """Return the broker's TLS context (reads files: call it off the event loop)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_test_certs(
    directory: Path, hosts: Iterable[str] = ("localhost", "127.0.0.1")
) -> TestCerts:
    """Write a fresh CA and a server certificate for ``hosts`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ekmsim test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ekmsim broker")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certs = TestCerts(
        directory=directory,
        ca_file=directory / "ca.pem",
        cert_file=directory / "broker.pem",
        key_file=directory / "broker.key",
    )
    certs.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certs.key_file.chmod(0o600)
    return certs


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# --- wire format -----------------------------------------------------------------------------


class MqttProtocolError(Exception):
    """A client sent something the broker does not accept."""


def encode_length(length: int) -> bytes:
    """Encode MQTT's variable-length 'remaining length'."""
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def packet(header: int, body: bytes) -> bytes:
    """Frame one packet."""
    return bytes((header,)) + encode_length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH packet."""
    name = topic.encode()
    return packet(0x30, struct.pack("!H", len(name)) + name + payload)


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one packet: (first header byte, body)."""
    header = (await reader.readexactly(1))[0]
    length, multiplier = 0, 1
    for _ in range(4):
        digit = (await reader.readexactly(1))[0]
        length += (digit & 0x7F) * multiplier
        if not digit & 0x80:
            break
        multiplier *= 128
    else:
        raise MqttProtocolError("Malformed remaining length")
    if length > MAX_PACKET:
        raise MqttProtocolError("Packet too large")
    return header, await reader.readexactly(length)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MqttProtocolError("Truncated packet")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def blob(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        try:
            return self.blob().decode()
        except UnicodeDecodeError:
            raise MqttProtocolError("Invalid UTF-8") from None

    @property
    def rest(self) -> bytes:
        return self.data[self.pos :]

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching with ``+`` and ``#``."""
    if pattern == topic:
        return True
    want, have = pattern.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part not in ("+", have[i])):
            return False
    return len(want) == len(have)


# --- the broker --------------------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    username: str | None = None
    subscriptions: set[str] = field(default_factory=set)

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


@dataclass(slots=True)
class BrokerStats:
    """Counters for tests and benchmarks."""

    connects: int = 0
    refused: int = 0
    published: int = 0
    delivered: int = 0


class MqttBroker:
    """A minimal MQTT 3.1.1 broker over TLS (QoS 0 delivery only).

    ``authorize(username)`` returns a CONNACK code (0 accepts);
    ``may_subscribe(username, topic)`` decides each SUBSCRIBE filter.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        *,
        authorize: Callable[[str | None], int] = lambda _user: CONNACK_ACCEPTED,
        may_subscribe: Callable[[str | None, str], bool] = lambda _user, _topic: True,
    ) -> None:
        self._ssl = ssl_context
        self._authorize = authorize
        self._may_subscribe = may_subscribe
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.host = "127.0.0.1"
        self.port = 0
        self.stats = BrokerStats()

    @property
    def listening(self) -> bool:
        """True while new connections are accepted."""
        return self._server is not None

    @property
    def session_count(self) -> int:
        """Connected (CONNACK-accepted) clients."""
        return sum(1 for s in self._sessions if s.username is not None)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen (``port`` 0 picks a free port; later restarts reuse it)."""
        if self._server is not None:
            return
        # TLS is started in the handler, so that failed handshakes (an untrusted CA is a
        # test case) end quietly instead of reaching the loop's exception handler.
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and drop every connection (abruptly, like a crash)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            server.abort_clients()
        for session in list(self._sessions):
            session.writer.transport.abort()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def drop_connections(self) -> None:
        """Abort every connection but keep listening."""
        for session in list(self._sessions):
            session.writer.transport.abort()

    def publish(self, topic: str, payload: bytes) -> int:
        """Deliver a QoS 0 message to every matching subscriber; returns how many."""
        self.stats.published += 1
        data = publish_packet(topic, payload)
        count = 0
        for session in self._sessions:
            if any(topic_matches(f, topic) for f in session.subscriptions):
                session.send(data)
                count += 1
        self.stats.delivered += count
        return count

    async def drain(self) -> None:
        """Wait until the subscribers' send buffers have been flushed to the sockets."""
        for session in list(self._sessions):
            if not session.writer.is_closing():
                try:
                    await session.writer.drain()
                except ConnectionError, ssl.SSLError:
                    continue

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        session = _Session(writer)
        self._sessions.add(session)
        try:
            if self._ssl is not None:
                async with asyncio.timeout(30):
                    await writer.start_tls(self._ssl)
            await self._serve(reader, session)
        except asyncio.IncompleteReadError, OSError, TimeoutError:
            pass
        except MqttProtocolError as err:
            _LOGGER.debug("Broker closed a connection: %s", err)
        finally:
            self._sessions.discard(session)
            self._handlers.discard(task)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, session: _Session) -> None:
        async with asyncio.timeout(30):
            header, body = await read_packet(reader)
        if header != 0x10:
            raise MqttProtocolError("First packet is not CONNECT")
        keepalive = self._connect(session, body)
        if session.username is None:
            return  # refused; CONNACK sent
        while True:
            timeout = keepalive * 1.5 if keepalive else None
            async with asyncio.timeout(timeout):
                header, body = await read_packet(reader)
            kind = header >> 4
            if kind == 3:  # PUBLISH
                self._client_publish(session, header, body)
            elif header == 0x82:  # SUBSCRIBE
                self._subscribe(session, body)
            elif header == 0xA2:  # UNSUBSCRIBE
                cursor = _Cursor(body)
                pid = cursor.u16()
                while not cursor.done:
                    session.subscriptions.discard(cursor.text())
                session.send(packet(0xB0, struct.pack("!H", pid)))
            elif header == 0xC0:  # PINGREQ
                session.send(b"\xd0\x00")
            elif header == 0xE0:  # DISCONNECT
                return
            else:
                raise MqttProtocolError(f"Unsupported packet type {kind}")

    def _connect(self, session: _Session, body: bytes) -> int:
        cursor = _Cursor(body)
        name = cursor.text()
        level = cursor.u8()
        flags = cursor.u8()
        keepalive = cursor.u16()
        cursor.text()  # client identifier
        if flags & 0x04:  # will topic and message
            cursor.text()
            cursor.blob()
        username = cursor.text() if flags & 0x80 else None
        if flags & 0x40:
            cursor.blob()  # password (EKM needs none)
        if (name, level) not in (("MQTT", 4), ("MQIsdp", 3)):
            code = CONNACK_BAD_PROTOCOL
        else:
            code = self._authorize(username)
        session.send(packet(0x20, bytes((0, code))))
        if code == CONNACK_ACCEPTED:
            session.username = username or ""
            self.stats.connects += 1
        else:
            self.stats.refused += 1
        return keepalive

    def _subscribe(self, session: _Session, body: bytes) -> None:
        cursor = _Cursor(body)
        pid = cursor.u16()
        granted = bytearray()
        while not cursor.done:
            topic = cursor.text()
            cursor.u8()  # requested QoS; everything is delivered at QoS 0
            if self._may_subscribe(session.username, topic):
                session.subscriptions.add(topic)
                granted.append(0)
            else:
                granted.append(0x80)
        if not granted:
            raise MqttProtocolError("SUBSCRIBE without topics")
        session.send(packet(0x90, struct.pack("!H", pid) + bytes(granted)))

    def _client_publish(self, session: _Session, header: int, body: bytes) -> None:
        qos = (header >> 1) & 0x03
        cursor = _Cursor(body)
        topic = cursor.text()
        if qos == 1:
            session.send(packet(0x40, cursor.take(2)))
        elif qos:
            raise MqttProtocolError("QoS 2 is not supported")
        self.publish(topic, cursor.rest)


# --- the EKM simulator -------------------------------------------------------------------------

# Fields sent as numeric strings in "mixed" style (the others go as JSON numbers).
_STRING_PREFIXES: Final = ("kWh", "Rev_kWh", "Reactive_Energy", "Pulse_Cnt", "RMS_Volts")
# The fields of a pushed 15-minute summary (a payload stays well under 256 kB per gateway).
SUMMARY_FIELDS: Final = (
    "kWh_Tot_*", "Rev_kWh_Tot_*", "Reactive_Energy_Tot_*", "kWh_Tariff_*", "Pulse_Cnt_*",
    "RMS_Watts_Tot_*", "Line_Freq_*", "RMS_Volts_Ln_*", "Amps_Ln_*", "RMS_Watts_Ln_*",
)  # fmt: skip


class MqttSimulator:
    """EKM's MQTT broker for a :class:`Fleet` (see the module docstring).

    ``value_style`` chooses how values are encoded: ``"mixed"`` (registers and volts as
    numeric strings, everything else as numbers), ``"numbers"`` or ``"strings"``.
    ``strict_acl`` lets a connection subscribe only to its own username's topics.
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        value_style: ValueStyle = "mixed",
        strict_acl: bool = False,
        reject_code: int = CONNACK_NOT_AUTHORIZED,
        summary_period_s: int = SUMMARY_PERIOD_S,
    ) -> None:
        self.fleet = fleet
        self.value_style: ValueStyle = value_style
        self.strict_acl = strict_acl
        self.reject_code = reject_code
        self.summary_period_s = summary_period_s
        self._rejected: set[str] = set()
        self._broker: MqttBroker | None = None
        self._certs: TestCerts | None = None
        self._own_dir: Path | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._window: int | None = None
        self.realtime_messages = 0
        self.summary_messages = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, cert_dir: Path | None = None
    ) -> None:
        """Make the CA (in ``cert_dir`` or a temporary one), listen, follow the fleet."""
        loop = asyncio.get_running_loop()
        if cert_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="ekmsim-mqtt-"))
        directory = cert_dir or self._own_dir
        assert directory is not None
        hosts = ("localhost", "127.0.0.1", "::1", *((host,) if host not in ("", "0.0.0.0") else ()))
        certs = await loop.run_in_executor(None, make_test_certs, directory, dict.fromkeys(hosts))
        context = await loop.run_in_executor(None, certs.server_context)
        self._certs = certs
        self._broker = MqttBroker(
            context, authorize=self._authorize, may_subscribe=self._may_subscribe
        )
        await self._broker.start(host, port)
        self._unsubscribe = self.fleet.subscribe(self._on_reads)

    async def stop(self) -> None:
        """Stop everything and delete a temporary CA directory."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._broker is not None:
            await self._broker.stop()
        if self._own_dir is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: shutil.rmtree(self._own_dir or "", ignore_errors=True)
            )
            self._own_dir = None

    async def stop_broker(self) -> None:
        """Fault: drop every connection and refuse new ones (the port stays reserved)."""
        await self.broker.stop()

    async def start_broker(self) -> None:
        """Undo :meth:`stop_broker`: listen again on the same port."""
        await self.broker.start(self.broker.host, self.broker.port)

    def drop_connections(self) -> None:
        """Fault: abort every client connection but keep listening."""
        self.broker.drop_connections()

    def reject_key(self, key: str) -> None:
        """Fault: refuse this gateway key (CONNACK and SUBACK) from now on."""
        self._rejected.add(key)

    def accept_key(self, key: str) -> None:
        """Undo :meth:`reject_key`."""
        self._rejected.discard(key)

    # --- properties ------------------------------------------------------------------------------

    @property
    def broker(self) -> MqttBroker:
        """The underlying broker (after :meth:`start`)."""
        if self._broker is None:
            raise RuntimeError("MqttSimulator.start() was not called")
        return self._broker

    @property
    def url(self) -> str:
        """``mqtts://127.0.0.1:PORT``."""
        host = self.broker.host
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return f"mqtts://{f'[{host}]' if ':' in host else host}:{self.broker.port}"

    @property
    def port(self) -> int:
        """The listening port."""
        return self.broker.port

    @property
    def ca_file(self) -> Path:
        """The PEM file of the test CA that signed the broker's certificate."""
        if self._certs is None:
            raise RuntimeError("MqttSimulator.start() was not called")
        return self._certs.ca_file

    # --- publishing ------------------------------------------------------------------------------

    async def publish_raw(
        self, gateway_key: str, payload: bytes | str, *, topic: str = "realtime"
    ) -> int:
        """Publish any payload on ``<topic>/<gateway key>``; returns the receiver count."""
        data = payload.encode() if isinstance(payload, str) else payload
        count = self.broker.publish(f"{topic}/{gateway_key}", data)
        await self.broker.drain()
        return count

    async def publish_faults(self, gateway_key: str, *, oversize: int = 300 * 1024) -> int:
        """Publish one of each bad payload (see :func:`fault_payloads`); returns how many."""
        payloads = fault_payloads(oversize)
        for payload in payloads:
            await self.publish_raw(gateway_key, payload)
        return len(payloads)

    async def publish_reads(self, batch: ReadBatch) -> None:
        """Publish a batch of reads now (what the fleet listener does) and flush."""
        self._on_reads(batch)
        await self.broker.drain()

    def realtime_payload(self, reads: Iterable[tuple[SimMeter, Read]]) -> bytes:
        """The realtime message body for some meters' reads."""
        body = {
            f"meter_{meter.address}": {
                "Protocol": meter.protocol,
                **{name: self._encode(name, value) for name, value in read.items()},
            }
            for meter, read in reads
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def _encode(self, name: str, value: float | int | str) -> float | int | str:
        if isinstance(value, str) or name in ("Time_Stamp_UTC_ms", "Good"):
            return value
        style = self.value_style
        if style == "strings" or (style == "mixed" and name.startswith(_STRING_PREFIXES)):
            return str(value)
        return value

    def _on_reads(self, batch: ReadBatch) -> None:
        if self._broker is None or not batch:
            return
        by_gateway: dict[str, list[tuple[SimMeter, Read]]] = {}
        for meter, read in batch:
            if meter.gateway_mac is not None:
                by_gateway.setdefault(meter.gateway_mac, []).append((meter, read))
        for mac, reads in by_gateway.items():
            gateway = self.fleet.gateways.get(mac)
            if gateway is not None:
                self._broker.publish(f"realtime/{gateway.key}", self.realtime_payload(reads))
                self.realtime_messages += 1
        stamp = batch[0][1].get("Time_Stamp_UTC_ms")
        if isinstance(stamp, int | float):
            window = int(stamp // 1000 // self.summary_period_s)
            if self._window is not None and window > self._window:
                self._publish_summaries(window * self.summary_period_s * 1000)
            self._window = window

    def _publish_summaries(self, end_ms: int) -> None:
        assert self._broker is not None
        start_ms = end_ms - self.summary_period_s * 1000
        numbers = self.value_style == "numbers"
        interval = self.fleet.interval_s
        for gateway in self.fleet.gateways.values():
            body: dict[str, object] = {}
            for address in gateway.meters:
                meter = self.fleet.meters.get(address)
                if meter is None:
                    continue
                row = summarize(meter, start_ms, end_ms, interval_s=interval, numbers=numbers)
                if row is not None:
                    body[f"meter_{address}"] = row
            if body:
                payload = json.dumps(body, separators=(",", ":")).encode()
                self._broker.publish(f"summary/{gateway.key}", payload)
                self.summary_messages += 1

    # --- access control ---------------------------------------------------------------------------

    def _valid_key(self, key: str | None) -> bool:
        return (
            bool(key) and key not in self._rejected and self.fleet.key_type(key or "") == "gateway"
        )

    def _authorize(self, username: str | None) -> int:
        if not username:
            return CONNACK_BAD_USERNAME
        return CONNACK_ACCEPTED if self._valid_key(username) else self.reject_code

    def _may_subscribe(self, username: str | None, topic: str) -> bool:
        kind, _, key = topic.partition("/")
        if kind not in ("realtime", "summary") or not self._valid_key(key):
            return False
        return not self.strict_acl or key == username


def summarize(
    meter: SimMeter, start_ms: int, end_ms: int, *, interval_s: int = 60, numbers: bool = False
) -> dict[str, object] | None:
    """A 15-minute summary in EKM's field style, from the Summary API's row function.

    None when the meter has no read in [start_ms, end_ms). Values are numeric strings
    (``numbers``: JSON numbers); ``Meter`` and ``Protocol`` as in realtime messages.
    """
    row = summary.summarize(
        meter,
        start_ms / 1000,
        end_ms / 1000,
        interval_s=interval_s,
        fields=SUMMARY_FIELDS,
        v2=False,
        numbers=numbers,
    )
    if row is None:
        return None
    return row | {"Meter": meter.address, "Protocol": meter.protocol}


def fault_payloads(oversize: int = 300 * 1024) -> list[bytes]:
    """Bad realtime payloads: a client must skip each one whole, without crashing."""
    return [
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"a string"',
        b"{}",
        b'{"gateway": {"kWh_Tot": "1"}, "iostack_000000000001": {"x": 1}}',
        b'{"meter_000000010389": "not an object", "meter_abc": {"kWh_Tot": 1}}',
        b'{"meter_0000000103891": {"kWh_Tot": 1}, "meter_": {"kWh_Tot": 1}}',
        b'{"meter_000000010389": {"Good": 0, "kWh_Tot": "12.5"}}',
        b'{"meter_000000010389": {"kWh_Tot": "' + b"1" * (oversize + 16) + b'"}}',
    ]


# --- python -m ekmsim ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--mqtt-port`` (and friends) to the simulator's command line."""
    group = parser.add_argument_group("MQTT broker")
    group.add_argument(
        "--mqtt-port", type=int, help="serve EKM's MQTT broker on this port (0: any)"
    )
    group.add_argument("--mqtt-cert-dir", type=Path, help="write the test CA here (default: temp)")
    group.add_argument(
        "--mqtt-values",
        choices=("mixed", "numbers", "strings"),
        default="mixed",
        help="how realtime values are encoded",
    )


async def start_from_args(
    fleet: Fleet, args: argparse.Namespace, host: str | None = None
) -> MqttSimulator | None:
    """Start the broker if ``--mqtt-port`` was given; the caller awaits ``stop()``."""
    if args.mqtt_port is None:
        return None
    sim = MqttSimulator(fleet, value_style=args.mqtt_values)
    bind: str = host or getattr(args, "host", None) or "127.0.0.1"
    await sim.start(bind, args.mqtt_port, cert_dir=args.mqtt_cert_dir)
    return sim


async def start_service(
    fleet: Fleet, args: argparse.Namespace
) -> Callable[[], Awaitable[None]] | None:
    """``python -m ekmsim`` hook: ``Service("mqtt", add_arguments, start_service)``."""
    sim = await start_from_args(fleet, args)
    if sim is None:
        return None
    fleet.controls["mqtt_stop"] = sim.stop_broker
    fleet.controls["mqtt_start"] = sim.start_broker
    print(
        f"mqtt: {sim.url}  (CA {sim.ca_file}; topics realtime/<gateway key>, "
        f"summary/<gateway key>)",
        flush=True,
    )
    print(
        f"mqtt try: scripts/ekm push --server {sim.url} --ca {sim.ca_file} "
        "--gateway-key <gateway key>",
        flush=True,
    )
    return sim.stop


__all__ = [
    "MqttBroker",
    "MqttSimulator",
    "TestCerts",
    "add_arguments",
    "fault_payloads",
    "make_test_certs",
    "start_from_args",
    "start_service",
    "summarize",
]
