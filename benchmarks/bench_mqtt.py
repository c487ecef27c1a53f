"""MQTT push through pyekm: publish-to-reading latency and sustained message rate.

Everything runs in one process and one event loop: the simulated EKM broker (ekmsim.mqtt,
TLS on 127.0.0.1) publishes, pyekm's EkmPushStream (aiomqtt/paho) receives and parses.
So the figures include the broker's work and both TLS ends; a real broker is far away
and only the client half is ours.

    .venv/bin/python benchmarks/bench_mqtt.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
import statistics
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from custom_components.ekm.pyekm.mqtt import (
    EkmPushStream,
    PushEvent,
    create_ssl_context,
)
from ekmsim.fleet import Fleet, SimClock
from ekmsim.mqtt import MqttSimulator


def _payloads(fleet: Fleet, sim: MqttSimulator, meters: int, count: int) -> list[bytes]:
    """``count`` realtime bodies of ``meters`` meters each (distinct reads)."""
    chosen = [fleet.meters[a] for a in sorted(fleet.meters)[:meters]]
    out: list[bytes] = []
    for _ in range(count):
        fleet.clock.advance(fleet.interval_s)
        now = fleet.clock.now()
        stamp = {"Good": 1, "Time_Stamp_UTC_ms": int(now * 1000)}
        out.append(sim.realtime_payload([(m, stamp | m.snapshot(now)) for m in chosen]))
    return out


async def _latency(
    sim: MqttSimulator,
    key: str,
    events: AsyncIterator[PushEvent],
    payloads: list[bytes],
    meters: int,
) -> list[float]:
    samples: list[float] = []
    for payload in payloads:
        start = time.perf_counter()
        sim.broker.publish(f"realtime/{key}", payload)
        for _ in range(meters):
            await anext(events)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def _throughput(
    sim: MqttSimulator,
    key: str,
    events: AsyncIterator[PushEvent],
    payloads: list[bytes],
    meters: int,
) -> tuple[float, float]:
    async def consume() -> None:
        for _ in range(len(payloads) * meters):
            await anext(events)

    consumer = asyncio.create_task(consume())
    start = time.perf_counter()
    for i, payload in enumerate(payloads):
        sim.broker.publish(f"realtime/{key}", payload)
        if i % 50 == 49:
            await sim.broker.drain()
    await consumer
    elapsed = time.perf_counter() - start
    return len(payloads) / elapsed, len(payloads) * meters / elapsed


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(messages: int) -> list[tuple[str, str]]:
    """Measure; return (label, value) rows."""
    fleet = Fleet.generate(100, per_gateway=32, clock=SimClock(1_700_000_000, manual=True))
    sim = MqttSimulator(fleet, value_style="mixed")
    await sim.start(port=0)
    rows: list[tuple[str, str]] = []
    try:
        loop = asyncio.get_running_loop()
        context = await loop.run_in_executor(None, create_ssl_context, sim.ca_file)
        key = next(iter(fleet.gateways.values())).key
        stream = EkmPushStream(key, server=sim.url, ssl_context=context, summary=False)
        async with stream.connect() as events:
            for meters in (1, 100):
                count = messages if meters == 1 else max(20, messages // 10)
                warm = _payloads(fleet, sim, meters, 10)
                await _latency(sim, key, events, warm, meters)
                samples = await _latency(
                    sim, key, events, _payloads(fleet, sim, meters, count), meters
                )
                size = len(warm[0])
                rows.append(
                    (
                        f"latency, {meters} meter(s)/message ({size / 1024:.1f} KiB), n={count}",
                        f"p50 {statistics.median(samples):.2f} ms, "
                        f"p99 {_pct(samples, 0.99):.2f} ms",
                    )
                )
            for meters in (1, 100):
                count = messages * 5 if meters == 1 else max(50, messages // 2)
                rate, readings = await _throughput(
                    sim, key, events, _payloads(fleet, sim, meters, count), meters
                )
                rows.append(
                    (
                        f"sustained, {meters} meter(s)/message, n={count}",
                        f"{rate:,.0f} messages/s ({readings:,.0f} readings/s)",
                    )
                )
        assert stream.stats.skipped_messages == 0
    finally:
        await sim.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400, help="latency samples (1 meter)")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.messages))
    width = max(len(label) for label, _ in rows)
    print(f"{'MQTT push through pyekm (in-process TLS broker)':{width}}  result")
    print(f"{'-' * width}  {'-' * 40}")
    for label, value in rows:
        print(f"{label:{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
