"""pyekm.mqtt through the simulated EKM broker (real TLS sockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
import gc
import json
import logging
import random
import ssl
from typing import Any

import pytest

from custom_components.ekm.pyekm import mqtt as mqtt_module
from custom_components.ekm.pyekm.errors import EkmAuthError, EkmConnectionError, EkmError
from custom_components.ekm.pyekm.models import MeterReading, Source, now_ms
from custom_components.ekm.pyekm.mqtt import (
    MAX_PAYLOAD,
    Backoff,
    EkmGatewayKeyError,
    EkmPushStream,
    MessageKind,
    PushEvent,
    SummaryReading,
    create_ssl_context,
    parse_payload,
    parse_server,
)
from ekmsim.fleet import DEMO_GATEWAY_KEY, DEMO_GATEWAY_MAC, DEMO_METER, Fleet
from ekmsim.mqtt import CONNACK_BAD_USERNAME, CONNACK_SERVER_UNAVAILABLE, MqttSimulator


def fast() -> Backoff:
    """A backoff for tests: 10 to 50 ms."""
    return Backoff(0.01, 0.05)


def is_connected(stream: EkmPushStream) -> bool:
    """Read the property afresh (keeps mypy from narrowing it across awaits)."""
    return stream.connected


@pytest.fixture
async def sim(fleet: Fleet) -> AsyncIterator[MqttSimulator]:
    """The simulated EKM MQTT broker for the demo fleet."""
    broker = MqttSimulator(fleet)
    await broker.start(port=0)
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture
async def tls(sim: MqttSimulator) -> ssl.SSLContext:
    """A verifying client context that trusts the simulator's test CA."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, create_ssl_context, sim.ca_file)


@pytest.fixture
def keys(fleet: Fleet) -> list[str]:
    """Both demo gateway keys, demo gateway first."""
    other = [gw.key for mac, gw in fleet.gateways.items() if mac != DEMO_GATEWAY_MAC]
    return [DEMO_GATEWAY_KEY, *other]


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll (a safety timeout only; nothing here measures time)."""
    async with asyncio.timeout(30):
        while not predicate():
            await asyncio.sleep(0.005)


async def next_event(events: AsyncIterator[PushEvent]) -> PushEvent:
    """The next event (with a safety timeout)."""
    async with asyncio.timeout(30):
        return await anext(events)


def assert_no_key(caplog: pytest.LogCaptureFixture, keys: list[str], *texts: str) -> None:
    for record in caplog.records:
        message = record.getMessage()
        assert not any(key in message for key in keys), record.name
    for text in texts:
        assert not any(key in text for key in keys)


def meter_payload(meters: Mapping[str, Mapping[str, object]]) -> bytes:
    return json.dumps({f"meter_{a}": v for a, v in meters.items()}).encode()


# --- realtime ------------------------------------------------------------------------------


async def test_fleet_reads_become_readings(
    fleet: Fleet, sim: MqttSimulator, tls: ssl.SSLContext, keys: list[str]
) -> None:
    stream = EkmPushStream(keys, server=sim.url, ssl_context=tls)
    async with stream.connect() as events:
        assert is_connected(stream)
        batch = [(m, r) for m, r in fleet.advance(fleet.interval_s) if m.gateway_mac]
        await sim.broker.drain()
        got = [await next_event(events) for _ in batch]
    assert not is_connected(stream)
    by_address = {event.address: event for event in got}
    assert set(by_address) == {meter.address for meter, _ in batch}
    for meter, read in batch:
        reading = by_address[meter.address]
        assert isinstance(reading, MeterReading)
        assert reading.source is Source.MQTT
        assert reading.protocol == meter.protocol
        assert reading.timestamp_ms == read["Time_Stamp_UTC_ms"]
        assert reading.number("kWh_Tot") == pytest.approx(read["kWh_Tot"])
        assert reading.number("RMS_Watts_Tot") == read["RMS_Watts_Tot"]
        assert "Protocol" not in reading.values
    assert stream.stats.readings == len(got)
    assert stream.stats.connects == 1


@pytest.mark.parametrize("style", ["numbers", "strings", "mixed"])
async def test_value_styles_give_the_same_reading(
    fleet: Fleet, sim: MqttSimulator, tls: ssl.SSLContext, style: str
) -> None:
    sim.value_style = style  # type: ignore[assignment]
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls, summary=False)
    async with stream.connect() as events:
        read = fleet.latest(DEMO_METER)
        assert read is not None
        meter = fleet.meters[DEMO_METER]
        await sim.publish_raw(DEMO_GATEWAY_KEY, sim.realtime_payload([(meter, read)]))
        reading = await next_event(events)
    assert isinstance(reading, MeterReading)
    expected = MeterReading.from_raw(DEMO_METER, read, Source.MQTT)
    assert dict(reading.values) == dict(expected.values)


async def test_several_meters_numbers_and_strings(sim: MqttSimulator, tls: ssl.SSLContext) -> None:
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    payload = meter_payload(
        {
            "000000010389": {"kWh_Tot": "1234.5", "RMS_Volts_Ln_1": 120.1, "Time_Stamp_UTC_ms": 5},
            "000000010388": {"kWh_Tot": 99, "RMS_Watts_Tot": "250", "Cos_Theta_Ln_1": "0.95 L"},
            "000000000007": {"kWh_Tot": " 7.25 ", "Time_Stamp_UTC_ms": "1700000000000"},
        }
    )
    before = now_ms()
    async with stream.connect() as events:
        assert await sim.publish_raw(DEMO_GATEWAY_KEY, payload) == 1
        got = [await next_event(events) for _ in range(3)]
    after = now_ms()
    assert all(isinstance(e, MeterReading) for e in got)
    first, second, third = got
    assert isinstance(first, MeterReading)
    assert isinstance(second, MeterReading)
    assert isinstance(third, MeterReading)
    assert (first.address, first.number("kWh_Tot"), first.number("RMS_Volts_Ln_1")) == (
        "000000010389",
        1234.5,
        120.1,
    )
    assert first.timestamp_ms == 5
    assert second.number("kWh_Tot") == 99.0
    assert second.values["RMS_Watts_Tot"] == 250
    assert second.values["Power_Factor_Ln_1"] == 95  # derived like every transport
    assert before <= second.timestamp_ms <= after  # no Time_Stamp_UTC_ms: receive time
    assert third.address == "000000000007"
    assert third.timestamp_ms == 1_700_000_000_000
    assert third.number("kWh_Tot") == 7.25


async def test_bad_payloads_are_skipped(
    sim: MqttSimulator, tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    good = meter_payload({DEMO_METER: {"kWh_Tot": "1.5"}})
    async with stream.connect() as events:
        count = await sim.publish_faults(DEMO_GATEWAY_KEY)
        await sim.publish_raw(DEMO_GATEWAY_KEY, b"")
        await sim.publish_raw(DEMO_GATEWAY_KEY, good)
        event = await next_event(events)
    assert isinstance(event, MeterReading)
    assert event.number("kWh_Tot") == 1.5
    assert stream.stats.skipped_messages == count + 1
    assert stream.stats.messages == count + 2
    skipped = [r.getMessage() for r in caplog.records if "Skipped" in r.getMessage()]
    assert any("too large" in m for m in skipped)
    assert any("not JSON" in m for m in skipped)
    assert any("not a JSON object" in m for m in skipped)
    assert any("failed read" in m for m in skipped)
    assert_no_key(caplog, [DEMO_GATEWAY_KEY])


def test_parse_payload_directly() -> None:
    assert parse_payload(MessageKind.REALTIME, b"x" * (MAX_PAYLOAD + 1)) == []
    assert parse_payload(MessageKind.REALTIME, '{"meter_1": {"kWh_Tot": 2}}', received_ms=9) == [
        MeterReading(
            address="000000000001", timestamp_ms=9, source=Source.MQTT, values={"kWh_Tot": 2.0}
        )
    ]
    [summary] = parse_payload(MessageKind.SUMMARY, '{"meter_1": {"kWh_Tot_Diff": "0.5"}}')
    assert isinstance(summary, SummaryReading)
    assert (summary.start_ms, summary.end_ms, summary.values) == (None, None, {"kWh_Tot_Diff": 0.5})


async def test_summary_messages(
    fleet: Fleet, sim: MqttSimulator, tls: ssl.SSLContext, keys: list[str]
) -> None:
    stream = EkmPushStream(keys, server=sim.url, ssl_context=tls)
    summaries: list[SummaryReading] = []
    async with stream.connect() as events:
        fleet.advance(sim.summary_period_s + fleet.interval_s)
        await sim.broker.drain()
        while len(summaries) < 4:  # the four gateway meters
            event = await next_event(events)
            if isinstance(event, SummaryReading):
                summaries.append(event)
    assert {s.address for s in summaries} == {
        a for gw in fleet.gateways.values() for a in gw.meters
    }
    for summary in summaries:
        assert summary.start_ms is not None
        assert summary.end_ms == summary.start_ms + sim.summary_period_s * 1000
        assert summary.source is Source.MQTT
        assert isinstance(summary.values["kWh_Tot_Diff"], float)
        assert summary.values["kWh_Tot_Max"] >= summary.values["kWh_Tot_Min"]  # type: ignore[operator]
        assert "RMS_Volts_Ln_1_Average" in summary.values
    assert stream.stats.summaries == 4


async def test_summary_not_subscribed(
    fleet: Fleet, sim: MqttSimulator, tls: ssl.SSLContext
) -> None:
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls, summary=False)
    async with stream.connect() as events:
        await sim.publish_raw(DEMO_GATEWAY_KEY, meter_payload({DEMO_METER: {}}), topic="summary")
        await sim.publish_raw(DEMO_GATEWAY_KEY, meter_payload({DEMO_METER: {"kWh_Tot": 3}}))
        event = await next_event(events)
    assert isinstance(event, MeterReading)
    assert stream.stats.messages == 1


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [None, CONNACK_BAD_USERNAME])
async def test_rejected_key_is_an_auth_error(
    sim: MqttSimulator,
    tls: ssl.SSLContext,
    keys: list[str],
    caplog: pytest.LogCaptureFixture,
    code: int | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    if code is not None:
        sim.reject_code = code
    sim.reject_key(keys[0])
    stream = EkmPushStream(keys, server=sim.url, ssl_context=tls)
    with pytest.raises(EkmGatewayKeyError) as caught:
        async with stream.connect():
            pytest.fail("connected")
    assert isinstance(caught.value, EkmAuthError)
    assert caught.value.key_index == 0
    assert "#1" in str(caught.value)
    assert keys[0][-4:] in str(caught.value)
    assert_no_key(caplog, keys, str(caught.value), repr(caught.value))
    sim.accept_key(keys[0])
    async with stream.connect():
        pass


async def test_unknown_key_is_an_auth_error(sim: MqttSimulator, tls: ssl.SSLContext) -> None:
    stream = EkmPushStream("Tm9TdWNoS2V5OmF0LWFsbA", server=sim.url, ssl_context=tls)
    with pytest.raises(EkmGatewayKeyError):
        async with stream.connect():
            pass


async def test_second_key_refused_on_subscribe(
    sim: MqttSimulator, tls: ssl.SSLContext, keys: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    sim.strict_acl = True  # a username may only subscribe to its own topics
    stream = EkmPushStream(keys, server=sim.url, ssl_context=tls)
    with pytest.raises(EkmGatewayKeyError) as caught:
        async with stream.connect():
            pass
    assert caught.value.key_index == 1
    assert "#2" in str(caught.value)
    assert_no_key(caplog, keys, str(caught.value))
    await wait_until(lambda: sim.broker.session_count == 0)


async def test_server_unavailable_is_a_connection_error(
    sim: MqttSimulator, tls: ssl.SSLContext
) -> None:
    sim.reject_code = CONNACK_SERVER_UNAVAILABLE
    sim.reject_key(DEMO_GATEWAY_KEY)
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    with pytest.raises(EkmConnectionError, match="refused the connection") as caught:
        async with stream.connect():
            pass
    assert not isinstance(caught.value, EkmAuthError)


async def test_broker_down_is_a_connection_error(sim: MqttSimulator, tls: ssl.SSLContext) -> None:
    await sim.stop_broker()
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    with pytest.raises(EkmConnectionError, match="Cannot connect") as caught:
        async with stream.connect():
            pass
    assert DEMO_GATEWAY_KEY not in str(caught.value)


async def test_untrusted_certificate_is_a_connection_error(sim: MqttSimulator) -> None:
    # No ssl_context: the stream builds the default (system CAs only) context itself.
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url)
    with pytest.raises(EkmConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        async with stream.connect():
            pass
    assert sim.broker.stats.connects == 0


async def test_connection_lost_while_iterating(sim: MqttSimulator, tls: ssl.SSLContext) -> None:
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    with pytest.raises(EkmConnectionError, match="Lost the connection"):
        async with stream.connect() as events:
            sim.drop_connections()
            await next_event(events)
    assert not is_connected(stream)


# --- run / run_forever ---------------------------------------------------------------------


async def test_run_forever_reconnects_after_20_drops(
    fleet: Fleet,
    sim: MqttSimulator,
    tls: ssl.SSLContext,
    keys: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stream = EkmPushStream(keys, server=sim.url, ssl_context=tls)
    log: list[str] = []
    errors: list[EkmError] = []
    readings: list[PushEvent] = []

    async def on_connect() -> None:
        log.append("up")

    def on_disconnect(err: EkmError) -> None:
        log.append("down")
        errors.append(err)

    task = asyncio.create_task(
        stream.run_forever(
            readings.append,
            on_connect=on_connect,
            on_disconnect=on_disconnect,
            backoff=fast(),
        )
    )
    try:
        for cycle in range(20):
            await wait_until(lambda: log.count("up") == cycle + 1)  # noqa: B023
            assert is_connected(stream)
            await sim.stop_broker()
            await wait_until(lambda: log.count("down") == cycle + 1)  # noqa: B023
            assert not is_connected(stream)
            await sim.start_broker()
        await wait_until(lambda: log.count("up") == 21)
        fleet.advance(fleet.interval_s)
        await sim.broker.drain()
        await wait_until(lambda: len(readings) == 4)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert log == ["up", "down"] * 20 + ["up"]
    assert all(isinstance(err, EkmConnectionError) for err in errors)
    assert stream.stats.connects == 21
    assert stream.stats.disconnects == 20
    assert not is_connected(stream)
    await wait_until(lambda: sim.broker.session_count == 0)
    assert_no_key(caplog, keys, *(str(err) for err in errors))
    assert any("REDACTED" in r.getMessage() for r in caplog.records)  # paho's log, scrubbed


async def test_run_forever_retries_until_the_broker_is_back(
    sim: MqttSimulator, tls: ssl.SSLContext
) -> None:
    await sim.stop_broker()
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    backoff = fast()
    connected = asyncio.Event()
    task = asyncio.create_task(
        stream.run_forever(lambda _e: None, on_connect=connected.set, backoff=backoff)
    )
    try:
        await wait_until(lambda: backoff.attempts >= 3)
        assert isinstance(stream.last_error, EkmConnectionError)
        await sim.start_broker()
        await connected.wait()
        assert backoff.attempts == 0  # reset on success
        assert stream.last_error is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_forever_stops_on_auth_error(sim: MqttSimulator, tls: ssl.SSLContext) -> None:
    sim.reject_key(DEMO_GATEWAY_KEY)
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    with pytest.raises(EkmGatewayKeyError):
        await stream.run_forever(lambda _e: None, backoff=fast())
    assert isinstance(stream.last_error, EkmGatewayKeyError)


async def test_callback_errors_are_logged_not_raised(
    sim: MqttSimulator, tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    seen: list[PushEvent] = []
    ready = asyncio.Event()

    async def on_event(event: PushEvent) -> None:
        seen.append(event)
        raise RuntimeError("callback bug")

    def on_connect() -> None:
        ready.set()
        raise RuntimeError("connect callback bug")

    task = asyncio.create_task(stream.run(on_event, on_connect=on_connect))
    try:
        await ready.wait()
        for value in (1, 2):
            await sim.publish_raw(DEMO_GATEWAY_KEY, meter_payload({DEMO_METER: {"kWh_Tot": value}}))
        await wait_until(lambda: len(seen) == 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sum("callback" in r.getMessage() for r in caplog.records) == 3


async def test_run_raises_when_the_connection_ends(sim: MqttSimulator, tls: ssl.SSLContext) -> None:
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    with pytest.raises(EkmConnectionError):
        await stream.run(lambda _e: None, on_connect=sim.drop_connections)


@pytest.mark.parametrize("ticks", [0, 1, 2, 3, 5, 8, 13, 30])
async def test_cancel_at_any_point_leaves_nothing_running(
    sim: MqttSimulator, tls: ssl.SSLContext, ticks: int
) -> None:
    """Cancel while connecting, subscribing or streaming (the fixtures check leftovers)."""
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    task = asyncio.create_task(stream.run_forever(lambda _e: None, backoff=fast()))
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not is_connected(stream)
    await wait_until(lambda: sim.broker.session_count == 0)


async def test_cancel_while_connected_unsubscribes_and_disconnects(
    sim: MqttSimulator, tls: ssl.SSLContext
) -> None:
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    connected = asyncio.Event()
    task = asyncio.create_task(stream.run_forever(lambda _e: None, on_connect=connected.set))
    await connected.wait()
    assert sim.broker.session_count == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: sim.broker.session_count == 0)
    assert stream.stats.disconnects == 0  # cancellation is not reported as a disconnect


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Every call of the event loop's exception handler ("Exception in callback ...")."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    calls: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: calls.append(context))
    try:
        yield calls
    finally:
        loop.set_exception_handler(previous)


def open_paho_sockets() -> list[ssl.SSLSocket]:
    """paho's TLS sockets still open (asyncio's own TLS uses SSLObject, not SSLSocket)."""
    gc.collect()  # also reports futures whose exception was never retrieved
    return [o for o in gc.get_objects() if isinstance(o, ssl.SSLSocket) and o.fileno() >= 0]


def aiomqtt_tasks() -> list[asyncio.Task[Any]]:
    """aiomqtt's housekeeping tasks (one per connection while connected)."""
    return [t for t in asyncio.all_tasks() if "_misc_loop" in repr(t.get_coro())]


def assert_silent(caplog: pytest.LogCaptureFixture, loop_errors: list[dict[str, Any]]) -> None:
    assert open_paho_sockets() == []
    assert aiomqtt_tasks() == []
    assert [(c.get("message"), c.get("exception")) for c in loop_errors] == []
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert [f"{r.levelname} {r.name}: {r.getMessage()}" for r in noisy] == []


async def connected_task(
    sim: MqttSimulator, tls: ssl.SSLContext
) -> tuple[EkmPushStream, asyncio.Task[Any]]:
    """A run_forever task, connected and waiting for messages."""
    stream = EkmPushStream(DEMO_GATEWAY_KEY, server=sim.url, ssl_context=tls)
    connected = asyncio.Event()
    task = asyncio.create_task(stream.run_forever(lambda _e: None, on_connect=connected.set))
    async with asyncio.timeout(30):
        await connected.wait()
    return stream, task


async def stopped(task: asyncio.Task[Any]) -> None:
    """Wait for a cancelled stream task (not cancelling it again meanwhile)."""
    await asyncio.wait([task], timeout=30)
    assert task.done(), "stopping hangs (waiting for an UNSUBACK that cannot come?)"
    assert task.cancelled()


@pytest.mark.parametrize("drop_after", [None, 0, 1, 2, 3, 5, 8])
async def test_stopping_is_silent_even_when_the_broker_goes_too(
    sim: MqttSimulator,
    tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    loop_errors: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    drop_after: int | None,
) -> None:
    """Issue 10, item 7: stop 10 times, the broker dropping the connection ``drop_after``
    loop ticks after the stop began (None: it stays up), as when Home Assistant and the
    simulator stop together. The UNSUBSCRIBE is queued while the socket goes away under
    it: no "Exception in callback BaseSelectorEventLoop.add_writer()" (EBADF), no error
    log, no wait for an UNSUBACK that cannot come, no socket or task left behind.
    """
    monkeypatch.setattr(mqtt_module, "CLOSE_TIMEOUT", 3600)  # a stall shows, is not cut short
    caplog.set_level(logging.DEBUG)
    for _ in range(10):
        _stream, task = await connected_task(sim, tls)
        task.cancel()
        if drop_after is not None:
            for _ in range(drop_after):
                await asyncio.sleep(0)
            sim.drop_connections()
        await stopped(task)
        await wait_until(lambda: sim.broker.session_count == 0)
    assert_silent(caplog, loop_errors)


@pytest.mark.parametrize("ticks", [0, 1, 2, 3, 5])
async def test_second_cancel_while_closing_still_disconnects(
    sim: MqttSimulator,
    tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    loop_errors: list[dict[str, Any]],
    ticks: int,
) -> None:
    """Cancelled again during the UNSUBSCRIBE (say, unloaded while stopping): the
    connection is still closed, and no late UNSUBACK is logged as unexpected."""
    caplog.set_level(logging.DEBUG)
    _stream, task = await connected_task(sim, tls)
    task.cancel()
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()
    await stopped(task)
    await wait_until(lambda: sim.broker.session_count == 0)
    await asyncio.sleep(0.05)  # a late UNSUBACK would be logged by now
    assert_silent(caplog, loop_errors)


# --- small pieces ----------------------------------------------------------------------------


def test_backoff() -> None:
    backoff = Backoff(1, 10, factor=2, jitter=0, rng=random.Random(1))
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 1
    jittered = Backoff(4, 4, jitter=0.5, rng=random.Random(2))
    delays = [jittered.next_delay() for _ in range(50)]
    assert all(2 <= d <= 4 for d in delays)
    assert len(set(delays)) > 1
    for bad in ({"initial": -1}, {"maximum": 0.5}, {"factor": 0.5}, {"jitter": 2}):
        with pytest.raises(ValueError, match="Invalid backoff"):
            Backoff(**{"initial": 1.0, "maximum": 10.0, **bad})  # type: ignore[arg-type]


async def test_backoff_wait() -> None:
    backoff = Backoff(0, 0)
    assert await backoff.wait() == 0
    assert backoff.attempts == 1


def test_parse_server() -> None:
    assert parse_server("mqtts://mqtts.ekmpush.com:8883") == ("mqtts.ekmpush.com", 8883)
    assert parse_server("mqtts://broker.example") == ("broker.example", 8883)
    assert parse_server("broker.example:1234") == ("broker.example", 1234)
    assert parse_server("mqtts://[::1]:9000/") == ("::1", 9000)
    for bad in (
        "mqtt://host:1883",
        "https://host",
        "mqtts://",
        "mqtts://u:p@host",
        "mqtts://host/path",
        "mqtts://host:99999",
    ):
        with pytest.raises(ValueError, match="MQTT server"):
            parse_server(bad)


def test_stream_arguments_and_repr() -> None:
    with pytest.raises(ValueError, match="gateway key"):
        EkmPushStream([])
    with pytest.raises(ValueError, match="gateway key"):
        EkmPushStream(["  "])
    with pytest.raises(ValueError, match="twice"):
        EkmPushStream([DEMO_GATEWAY_KEY, DEMO_GATEWAY_KEY])
    stream = EkmPushStream([DEMO_GATEWAY_KEY, "a-second-gateway-key"], server="mqtts://[::1]:1")
    assert stream.key_count == 2
    assert stream.server == "mqtts://[::1]:1"
    assert DEMO_GATEWAY_KEY not in repr(stream)
    assert "2 gateway key(s)" in repr(stream)
    default = EkmPushStream(DEMO_GATEWAY_KEY)
    assert default.server == "mqtts://mqtts.ekmpush.com:8883"


async def test_create_ssl_context_verifies(sim: MqttSimulator) -> None:
    loop = asyncio.get_running_loop()
    context = await loop.run_in_executor(None, create_ssl_context, None)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    with_ca = await loop.run_in_executor(None, create_ssl_context, sim.ca_file)
    assert with_ca.cert_store_stats()["x509_ca"] >= 1
