"""RS-485 through pyekm: read cost on a baud-paced virtual line, and bus throughput.

The virtual Omnimeters (ekmsim.rs485) send every byte at 9600 baud (10 bit times per
character) and turn around 20 ms after a request; pyekm's EkmBus runs with its defaults
(50 ms gap before each frame it sends, close string after every session). Each figure is
compared with the pure wire time of the bytes exchanged (requests, responses and close
string), so ``ratio`` shows what timing, turnaround and pyekm add to the line itself.

    .venv/bin/python benchmarks/bench_rs485.py [--transport pty|tcp] [--reads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from custom_components.ekm.pyekm.rs485.client import EkmBus
from custom_components.ekm.pyekm.rs485.protocol import wire_time
from ekmsim.fleet import SimClock, SimMeter
from ekmsim.rs485 import VirtualBus

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".bench" / "rs485.json"


def _meters(count: int, clock: SimClock) -> list[SimMeter]:
    """A mixed bus: every fourth meter a v3, the others v4/v5."""
    meters = []
    for i in range(count):
        if i % 4 == 3:
            meters.append(SimMeter(address=f"{10_000_000 + i:012d}", protocol="v3", clock=clock))
        else:
            protocol = "v5" if i % 4 == 2 else "v4"
            address = f"{300_000_000 + i:012d}"
            meters.append(SimMeter(address=address, protocol=protocol, clock=clock))
    return meters


async def _open(bus: VirtualBus, transport: str, tmp: Path) -> str:
    if transport == "pty":
        return await bus.open_pty(tmp / "ttyEKM")
    return f"socket://127.0.0.1:{await bus.serve_tcp()}"


async def _single(kind: str, transport: str, reads: int, tmp: Path) -> dict[str, float | int | str]:
    """Median cost of one read: 'v4 A+B', 'v4 A (cached B)' or 'v3'."""
    clock = SimClock(manual=True)
    protocol = "v3" if kind == "v3" else "v4"
    meter = SimMeter(address="000300001234", protocol=protocol, clock=clock)
    async with VirtualBus([meter]) as line:
        url = await _open(line, transport, tmp)
        b_every = 1 if kind == "v4 A+B" else 1_000_000
        async with EkmBus(url, b_every=b_every, protocols={meter.address: protocol}) as client:
            await client.read(meter.address)  # warm-up (port open, B cached)
            times, chars = [], []
            for _ in range(reads):
                before = client.line.bytes_sent + client.line.bytes_received
                start = time.perf_counter()
                await client.read(meter.address)
                times.append(time.perf_counter() - start)
                # The close string goes out as the session ends: count it too.
                chars.append(client.line.bytes_sent + client.line.bytes_received - before)
    elapsed = statistics.median(times)
    wire = wire_time(int(statistics.median(chars)))
    return {
        "read": kind,
        "bytes": int(statistics.median(chars)),
        "wire_ms": round(wire * 1000, 1),
        "median_ms": round(elapsed * 1000, 1),
        "ratio": round(elapsed / wire, 2),
    }


async def _throughput(count: int, transport: str, seconds: float, tmp: Path) -> dict[str, float]:
    """Reads per minute polling ``count`` meters round-robin (B every 10th read)."""
    clock = SimClock(manual=True)
    meters = _meters(count, clock)
    async with VirtualBus(meters) as line:
        url = await _open(line, transport, tmp)
        hints = {m.address: "v3" if m.protocol == "v3" else "v4" for m in meters}
        async with EkmBus(url, protocols=hints) as client:
            for m in meters:  # warm-up: first B of every meter
                await client.read(m.address)
            reads = 0
            bytes_before = client.line.bytes_sent + client.line.bytes_received
            start = time.perf_counter()
            while time.perf_counter() - start < seconds or reads % count:
                await client.read(meters[reads % count].address)
                reads += 1
            elapsed = time.perf_counter() - start
            chars = client.line.bytes_sent + client.line.bytes_received - bytes_before
    return {
        "meters": count,
        "reads": reads,
        "reads_per_min": round(reads / elapsed * 60, 1),
        "sweep_s": round(elapsed / (reads / count), 2),
        "line_busy": round(wire_time(chars) / elapsed, 2),
    }


async def _run(transport: str, reads: int, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        singles = [
            await _single(kind, transport, reads, Path(tmp))
            for kind in ("v4 A+B", "v4 A (cached B)", "v3")
        ]
        buses = [await _throughput(n, transport, seconds, Path(tmp)) for n in (1, 4, 16)]
    return {"transport": transport, "single": singles, "bus": buses}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("pty", "tcp"), default="pty")
    parser.add_argument("--reads", type=int, default=5, help="reads per single-read figure")
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput figure")
    args = parser.parse_args(argv)
    results = asyncio.run(_run(args.transport, args.reads, args.seconds))
    print(f"RS-485 at 9600 baud 7E1 over a virtual {args.transport} (20 ms meter turnaround)")
    print(f"{'read':<18}{'bytes':>7}{'wire ms':>10}{'median ms':>11}{'ratio':>7}")
    for row in results["single"]:  # type: ignore[attr-defined]
        print(
            f"{row['read']:<18}{row['bytes']:>7}{row['wire_ms']:>10}"
            f"{row['median_ms']:>11}{row['ratio']:>7}"
        )
    print()
    print(f"{'meters':>6}{'reads':>7}{'reads/min':>11}{'sweep s':>9}{'line busy':>11}")
    for row in results["bus"]:  # type: ignore[attr-defined]
        print(
            f"{row['meters']:>6}{row['reads']:>7}{row['reads_per_min']:>11}"
            f"{row['sweep_s']:>9}{row['line_busy']:>11.0%}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
