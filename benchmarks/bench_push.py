"""Benchmark: MQTT push through the real integration, into Home Assistant states.

Run by ``scripts/bench push`` (pytest is only the harness that gives us a real Home
Assistant; nothing here asserts a time). The simulated EKM broker (``ekmsim.mqtt``, real
TLS on 127.0.0.1) and the simulated cloud (``ekmsim.cloud``) run in the same process and
event loop as Home Assistant, so the wall times include the broker's work and both TLS
ends; a real broker is far away and only the client half is ours.

* ``latency``: from just before the broker publishes a realtime message until the
  ``Reporting`` state of every meter in it is written, p50/p99; one meter per message
  (1-meter install) and 100 meters per message (one gateway with 100 meters), plus one
  meter per message in that 100-meter install (the cost of an update grows with it).
  ``handled`` is until the integration's callbacks for the message have all run.
* ``throughput``: N one-meter messages published back to back, until the last state.
* ``rest``: Realtime (``readMeter``) requests during one simulated hour (60 steps of
  60 s with the freezer and ``async_fire_time_changed``) for the demo fleet: polling
  only, the demo gateway's key, every gateway's key, and every key with the meter on no
  gateway excluded (the safety net alone).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
from datetime import timedelta
import json
from pathlib import Path
import statistics
import sys
import time
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import CONF_API_KEY
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.ekm.const import (
    CONF_EXCLUDED_METERS,
    CONF_GATEWAY_KEYS,
    CONF_MQTT_CA_FILE,
    CONF_MQTT_SERVER,
    CONF_SERVER,
    DOMAIN,
)
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_ACCOUNT_KEY, DEMO_GATEWAY_KEY, DEMO_GATEWAY_MAC, Fleet, SimClock
from ekmsim.mqtt import MqttSimulator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".bench" / "push.json"
LATENCY_SAMPLES = {1: 300, 100: 50}  # messages per case (brief: >= 200 and >= 50)
SMALL_IN_BIG_SAMPLES = 100  # one-meter messages in the 100-meter install
THROUGHPUT_MESSAGES = 2000
WAIT_S = 30.0  # give up on one message after this long (counted as lost)
LOOSE_METER = "000300000001"  # the demo meter on no gateway


def _out(line: str) -> None:
    print(line, file=sys.__stdout__, flush=True)


def _save(section: str, key: str, row: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault(section, {})[key] = row
    RESULTS.write_text(json.dumps(results, indent=2))
    _out(f"BENCH push {section} {json.dumps(row)}")


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _one_gateway_fleet(meters: int, clock: SimClock) -> Fleet:
    """A generated fleet with all its meters on its first gateway (generate caps at 32)."""
    fleet = Fleet.generate(meters, clock=clock, history_len=50)
    first, *others = fleet.gateways.values()
    for gateway in others:
        for address in gateway.meters:
            fleet.meters[address].gateway_mac = first.mac
            first.meters.append(address)
        del fleet.gateways[gateway.mac]
    return fleet


@contextlib.asynccontextmanager
async def _world(
    fleet: Fleet, cert_dir: Path
) -> AsyncIterator[tuple[CloudSimulator, MqttSimulator]]:
    cloud = CloudSimulator(fleet)
    await cloud.start(host="127.0.0.1", port=0)
    broker = MqttSimulator(fleet, value_style="mixed")
    await broker.start(host="127.0.0.1", port=0, cert_dir=cert_dir)
    try:
        yield cloud, broker
    finally:
        await broker.stop()
        await cloud.stop()


async def _setup(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    broker: MqttSimulator,
    keys: dict[str, str],
    **options: Any,
) -> MockConfigEntry:
    if keys:
        options |= {
            CONF_GATEWAY_KEYS: keys,
            CONF_MQTT_SERVER: broker.url,
            CONF_MQTT_CA_FILE: str(broker.ca_file),
        }
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="EKM Push account 1010",
        unique_id="1010",
        data={CONF_API_KEY: DEMO_ACCOUNT_KEY, CONF_SERVER: cloud.url},
        options=options,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def _streams_up(entry: MockConfigEntry) -> bool:
    push = entry.runtime_data.push
    return push is None or all(gw.connected for gw in push.gateways.values())


def _last_read_entities(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, str]:
    """entity_id -> meter address of every meter's ``Reporting`` sensor.

    Its ``last_reading`` attribute is written with every reading (the *Last reading*
    sensor is disabled by default, so it has no state to watch).
    """
    registry = er.async_get(hass)
    out: dict[str, str] = {}
    for address in entry.runtime_data.coordinator.data.devices:
        unique_id = f"{entry.unique_id}_{address}_reporting"
        entity_id = registry.async_get_entity_id("binary_sensor", DOMAIN, unique_id)
        assert entity_id is not None, f"no Reporting sensor for {address}"
        out[entity_id] = address
    return out


# --- latency and throughput ---------------------------------------------------------------


class _StateWatch:
    """Times the writes of ``Reporting`` states for one expected reading per meter."""

    def __init__(self, hass: HomeAssistant, entry: MockConfigEntry) -> None:
        self.coordinator = entry.runtime_data.coordinator
        self.by_entity = _last_read_entities(hass, entry)
        self.pending: set[str] = set()
        self.stamp = 0
        self.first = self.last = 0.0
        self.writes = 0  # every Reporting state written (any meter, any reading)
        self.done = asyncio.Event()
        entities = set(self.by_entity)

        @callback
        def accept(data: EventStateChangedData) -> bool:
            return data["entity_id"] in entities

        self.unsub = hass.bus.async_listen("state_changed", self._changed, event_filter=accept)

    def expect(self, addresses: set[str], stamp: int) -> None:
        self.pending = set(addresses)
        self.stamp = stamp
        self.first = self.last = 0.0
        self.done.clear()

    @callback
    def _changed(self, event: Event[EventStateChangedData]) -> None:
        now = time.perf_counter()
        self.writes += 1
        address = self.by_entity[event.data["entity_id"]]
        if address not in self.pending:
            return
        reading = self.coordinator.data.readings.get(address)
        if reading is None or reading.timestamp_ms < self.stamp:
            return
        self.pending.discard(address)
        self.first = self.first or now
        if not self.pending:
            self.last = now
            self.done.set()


def _payloads(
    fleet: Fleet, broker: MqttSimulator, addresses: list[str], count: int, start_s: float
) -> list[tuple[int, bytes]]:
    """``count`` realtime bodies for ``addresses``, one minute apart, built beforehand.

    The reads are not added to the fleet's history: the cloud never hears of them, so
    no poll can apply one before the push does.
    """
    meters = [fleet.meters[a] for a in addresses]
    out: list[tuple[int, bytes]] = []
    for i in range(count):
        when = start_s + 60 * (i + 1)
        stamp = int(when * 1000)
        meta = {"Good": 1, "Time_Stamp_UTC_ms": stamp}
        out.append((stamp, broker.realtime_payload([(m, meta | m.snapshot(when)) for m in meters])))
    return out


async def _latency_run(
    hass: HomeAssistant,
    watch: _StateWatch,
    *,
    broker: MqttSimulator,
    key: str,
    payloads: list[tuple[int, bytes]],
    addresses: set[str],
) -> dict[str, Any]:
    samples: list[float] = []
    firsts: list[float] = []
    handled: list[float] = []
    lost = 0
    for stamp, payload in payloads:
        watch.expect(addresses, stamp)
        start = time.perf_counter()
        await broker.publish_raw(key, payload)
        try:
            async with asyncio.timeout(WAIT_S):
                await watch.done.wait()
        except TimeoutError:
            lost += 1
            continue
        # We resume once the integration's callbacks for the message have all run (state
        # writes of the other entities of the same coordinator update included).
        handled.append((time.perf_counter() - start) * 1000)
        samples.append((watch.last - start) * 1000)
        firsts.append((watch.first - start) * 1000)
        await hass.async_block_till_done()
        await asyncio.sleep(0.002)  # let the loop go idle: one message at a time
    return {
        "messages": len(payloads),
        "lost": lost,
        "p50_ms": round(statistics.median(samples), 2) if samples else None,
        "p99_ms": round(_pct(samples, 99), 2) if samples else None,
        "max_ms": round(max(samples), 2) if samples else None,
        "first_state_p50_ms": round(statistics.median(firsts), 2) if firsts else None,
        "handled_p50_ms": round(statistics.median(handled), 2) if handled else None,
        "handled_p99_ms": round(_pct(handled, 99), 2) if handled else None,
    }


@pytest.mark.usefixtures("enable_custom_integrations", "socket_enabled")
@pytest.mark.parametrize("meters", [1, 100])
async def test_push_latency(
    hass: HomeAssistant,
    tmp_path: Path,
    meters: int,
) -> None:
    """Publish-to-state latency (and, for 1 meter, sustained messages per second)."""
    fleet = _one_gateway_fleet(meters, SimClock(manual=True))
    fleet.backfill(3)
    gateway = next(iter(fleet.gateways.values()))
    addresses = sorted(fleet.meters)
    async with _world(fleet, tmp_path) as (cloud, broker):
        entry = await _setup(hass, cloud, broker, {gateway.key: gateway.mac})
        for _ in range(3000):
            if _streams_up(entry):
                break
            await asyncio.sleep(0.01)
        await hass.async_block_till_done()
        entities = len(hass.states.async_entity_ids())
        watch = _StateWatch(hass, entry)
        start_s = fleet.clock.now()

        payloads = _payloads(fleet, broker, addresses, LATENCY_SAMPLES[meters], start_s)
        row = await _latency_run(
            hass, watch, broker=broker, key=gateway.key, payloads=payloads, addresses=set(addresses)
        )
        shape = {"meters_per_message": meters, "meters_installed": meters, "entities": entities}
        _save("latency", f"{meters} meter{'s' if meters > 1 else ''}/message", shape | row)
        start_s += 60 * (len(payloads) + 1)

        if meters > 1:
            one = addresses[:1]
            payloads = _payloads(fleet, broker, one, SMALL_IN_BIG_SAMPLES, start_s)
            row = await _latency_run(
                hass, watch, broker=broker, key=gateway.key, payloads=payloads, addresses=set(one)
            )
            shape["meters_per_message"] = 1
            _save("latency", f"1 meter/message, {meters} installed", shape | row)
        else:
            payloads = _payloads(fleet, broker, addresses, THROUGHPUT_MESSAGES, start_s)
            await _throughput(
                hass,
                watch,
                broker=broker,
                key=gateway.key,
                payloads=payloads,
                addresses=set(addresses),
            )

        watch.unsub()
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


async def _throughput(
    hass: HomeAssistant,
    watch: _StateWatch,
    *,
    broker: MqttSimulator,
    key: str,
    payloads: list[tuple[int, bytes]],
    addresses: set[str],
) -> None:
    push = watch.coordinator.config_entry.runtime_data.push
    assert push is not None

    def received() -> int:
        return sum(gw.stream.stats.messages for gw in push.gateways.values() if gw.stream)

    watch.expect(addresses, payloads[-1][0])
    writes0, messages0 = watch.writes, received()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _stamp, payload in payloads:
        await broker.publish_raw(key, payload)
    published = time.perf_counter()
    timed_out = False
    try:
        async with asyncio.timeout(WAIT_S * 4):
            await watch.done.wait()
    except TimeoutError:
        timed_out = True
    end = watch.last if not timed_out else time.perf_counter()
    cpu = time.process_time() - cpu0
    await hass.async_block_till_done()
    wall = end - wall0
    row = {
        "messages": len(payloads),
        "received_by_client": received() - messages0,
        "states_written": watch.writes - writes0,
        "last_state_reached": not timed_out,
        "publish_s": round(published - wall0, 3),
        "wall_s": round(wall, 3),
        "messages_per_s": round(len(payloads) / wall, 1),
        "cpu_ms_per_message": round(cpu * 1000 / len(payloads), 3),
    }
    _save("throughput", "1 meter/message", row)


# --- REST requests per hour ------------------------------------------------------------------

REST_CASES: dict[str, Callable[[Fleet], tuple[dict[str, str], dict[str, Any]]]] = {
    "polling only": lambda _f: ({}, {}),
    "demo gateway key": lambda _f: ({DEMO_GATEWAY_KEY: DEMO_GATEWAY_MAC}, {}),
    "every gateway key": lambda f: ({gw.key: gw.mac for gw in f.gateways.values()}, {}),
    "every key, loose meter excluded": lambda f: (
        {gw.key: gw.mac for gw in f.gateways.values()},
        {CONF_EXCLUDED_METERS: [LOOSE_METER]},
    ),
}


async def _spin(condition: Callable[[], bool], limit: int = 200_000) -> bool:
    """Run the loop (time is frozen: no sleeping) until the condition holds."""
    for _ in range(limit):
        if condition():
            return True
        await asyncio.sleep(0)
    return condition()


async def _idle(seconds: float) -> None:
    """Let the loop serve its sockets for a little real time (loop time is frozen).

    Without this a step could end before, say, the broker's PINGRESP is read; the next
    60 s tick would then time the ping out and drop a stream: a harness artifact.
    """
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, seconds)


@pytest.mark.usefixtures("enable_custom_integrations", "socket_enabled")
@pytest.mark.parametrize("case", list(REST_CASES))
async def test_rest_requests_per_hour(
    freezer: FrozenDateTimeFactory,
    hass: HomeAssistant,
    tmp_path: Path,
    case: str,
) -> None:
    """Realtime requests during one simulated hour, for the demo fleet."""
    fleet = Fleet.demo(clock=SimClock(start=time.time(), manual=True))
    fleet.backfill(5)
    keys, options = REST_CASES[case](fleet)
    async with _world(fleet, tmp_path) as (cloud, broker):
        entry = await _setup(hass, cloud, broker, keys, **options)
        coordinator = entry.runtime_data.coordinator
        included = sorted(coordinator.data.devices)

        def polls_idle() -> bool:
            return not any(
                not task.done() and "push" not in task.get_name() for task in hass._background_tasks
            )

        def settled() -> bool:
            readings = coordinator.data.readings
            return polls_idle() and all(
                a in readings
                and readings[a].timestamp_ms == fleet.history(a)[-1]["Time_Stamp_UTC_ms"]
                for a in included
            )

        hass.loop.slow_callback_duration = 3600  # frozen time makes every step look slow
        assert await _spin(lambda: _streams_up(entry))
        assert await _spin(settled)
        await _idle(0.05)
        cloud.reset_counts()
        behind = 0
        for _ in range(60):
            freezer.tick(timedelta(seconds=60))
            fleet.advance(60)  # publishes each gateway's realtime message
            async_fire_time_changed(hass)
            await hass.async_block_till_done()
            if not await _spin(settled):
                behind += 1  # some meter's newest reading did not arrive this minute
            await _idle(0.01)
        polls = [q for name, q in cloud.request_log if name == "readMeter" and "since" not in q]
        fills = [q for name, q in cloud.request_log if name == "readMeter" and "since" in q]
        push = entry.runtime_data.push
        row = {
            "gateway_keys": len(keys),
            "meters": len(included),
            "readMeter_requests": cloud.requests["readMeter"],
            "poll_requests": len(polls),
            "meters_polled": sum(len(q["meters"].split("~")) for q in polls),
            "gap_fill_requests": len(fills),
            "account_requests": cloud.requests["account"],
            "minutes_behind": behind,
            "stream_disconnects": sum(
                gw.stream.stats.disconnects for gw in push.gateways.values() if gw.stream
            )
            if push
            else 0,
        }
        _save("rest_per_hour", case, row)
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


def test_zz_table() -> None:
    """Print every figure saved so far as one table."""
    if not RESULTS.exists():
        return
    results = json.loads(RESULTS.read_text())
    lines = [
        "",
        "publish -> Reporting state of every meter in the message (ms); 'handled': until",
        "the integration's callbacks for the message are done (loop free again)",
        "  case                              msgs  lost     p50      p99      max  handled50",
    ]
    for name, r in results.get("latency", {}).items():
        keys = ("p50_ms", "p99_ms", "max_ms", "handled_p50_ms")
        p50, p99, top, done = (f"{r.get(k) or 0:8.2f}" for k in keys)
        lines.append(f"  {name:32} {r['messages']:5} {r['lost']:5} {p50} {p99} {top} {done}")
    for name, r in results.get("throughput", {}).items():
        lines.append(
            f"sustained, {name}: {r['messages_per_s']} msg/s ({r['messages']} messages, "
            f"{r['states_written']} states written, {r['cpu_ms_per_message']} ms CPU each)"
        )
    lines.append("Realtime readMeter requests in one simulated hour (demo fleet, 60 x 60 s)")
    lines.append(
        "  case                             keys meters requests meters_polled gap_fills drops"
    )
    for name, r in results.get("rest_per_hour", {}).items():
        lines.append(
            f"  {name:32} {r['gateway_keys']:4} {r['meters']:6} {r['readMeter_requests']:8} "
            f"{r['meters_polled']:13} {r['gap_fill_requests']:9} {r['stream_disconnects']:5}"
        )
    for line in lines:
        _out(f"BENCH push | {line}")
