"""RS-485 through pyekm: read cost on a baud-paced virtual line, and bus throughput.

The virtual Omnimeters (ekmsim.rs485) send every byte at 9600 baud (10 bit times per
character, each handed over once its stop bit is out) and turn around 20 ms after a
request; pyekm's EkmBus runs with its defaults (``INTER_FRAME_GAP`` of silence on the
line before each frame it sends, close string after every session). Each figure is
compared with the pure wire time of the bytes exchanged (requests, responses and close
string), so ``ratio`` shows what timing, turnaround and pyekm add to the line itself;
``turn ms`` is the meters' share (20 ms per answer) and ``idle ms`` what is left: the
gaps and scheduling, i.e. pyekm's share.

``--gaps`` sweeps EkmBus's ``gap`` instead: the cost of an A+B read and the silence the
meter actually saw before each of our frames (recorded by the simulator). That is how
``INTER_FRAME_GAP`` was measured.

    .venv/bin/python benchmarks/bench_rs485.py [--transport pty|tcp] [--reads N] [--gaps]
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
from custom_components.ekm.pyekm.rs485.transport import INTER_FRAME_GAP
from ekmsim.fleet import SimClock, SimMeter
from ekmsim.rs485 import VirtualBus

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".bench" / "rs485.json"
TURNAROUND = 0.02
GAPS_MS = (0, 1, 2, 5, 10, 20, 50)


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


async def _single(
    kind: str, transport: str, reads: int, tmp: Path, gap: float = INTER_FRAME_GAP
) -> dict[str, float | int | str]:
    """Median cost of one read: 'v4 A+B', 'v4 A (cached B)' or 'v3'."""
    clock = SimClock(manual=True)
    protocol = "v3" if kind == "v3" else "v4"
    meter = SimMeter(address="000300001234", protocol=protocol, clock=clock)
    async with VirtualBus([meter], turnaround=TURNAROUND) as line:
        url = await _open(line, transport, tmp)
        b_every = 1 if kind == "v4 A+B" else 1_000_000
        hints = {meter.address: protocol}
        async with EkmBus(url, b_every=b_every, gap=gap, protocols=hints) as client:
            await client.read(meter.address)  # warm-up (port open, B cached)
            line.silences.clear()
            times, chars = [], []
            for _ in range(reads):
                before = client.line.bytes_sent + client.line.bytes_received
                start = time.perf_counter()
                await client.read(meter.address)
                times.append(time.perf_counter() - start)
                # The close string goes out as the session ends: count it too.
                chars.append(client.line.bytes_sent + client.line.bytes_received - before)
            await asyncio.sleep(0.05)  # the last close reaches the meter
            silences = sorted(line.silences)
            collisions = line.collisions
    elapsed = statistics.median(times)
    wire = wire_time(int(statistics.median(chars)))
    turn = TURNAROUND * (2 if kind == "v4 A+B" else 1)
    return {
        "read": kind,
        "gap_ms": round(gap * 1000, 1),
        "bytes": int(statistics.median(chars)),
        "wire_ms": round(wire * 1000, 1),
        "turn_ms": round(turn * 1000, 1),
        "median_ms": round(elapsed * 1000, 1),
        "idle_ms": round((elapsed - wire - turn) * 1000, 1),
        "ratio": round(elapsed / wire, 2),
        "ratio_with_turn": round(elapsed / (wire + turn), 2),
        "silence_min_ms": round(silences[0] * 1000, 2),
        "silence_median_ms": round(statistics.median(silences) * 1000, 2),
        "collisions": collisions,
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


async def _gaps(transport: str, reads: int) -> dict[str, object]:
    """The A+B read and the meter's silence for each gap in GAPS_MS."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = [await _single("v4 A+B", transport, reads, Path(tmp), ms / 1000) for ms in GAPS_MS]
    return {"transport": transport, "gaps": rows}


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
    parser.add_argument("--gaps", action="store_true", help="sweep the inter-frame gap")
    args = parser.parse_args(argv)
    title = f"RS-485 at 9600 baud 7E1 over a virtual {args.transport} (20 ms meter turnaround)"
    if args.gaps:
        sweep = asyncio.run(_gaps(args.transport, max(args.reads, 20)))
        print(f"{title}: v4 A+B read by inter-frame gap")
        print(
            f"{'gap ms':>6}{'median ms':>11}{'idle ms':>9}{'ratio':>7}{'silence min/median ms':>23}"
        )
        for row in sweep["gaps"]:  # type: ignore[attr-defined]
            silence = f"{row['silence_min_ms']:.2f} / {row['silence_median_ms']:.2f}"
            print(
                f"{row['gap_ms']:>6}{row['median_ms']:>11}{row['idle_ms']:>9}"
                f"{row['ratio']:>7}{silence:>23}"
            )
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.with_name("rs485_gaps.json").write_text(json.dumps(sweep, indent=2) + "\n")
        return 0
    results = asyncio.run(_run(args.transport, args.reads, args.seconds))
    print(f"{title}, gap {INTER_FRAME_GAP * 1000:g} ms")
    print(
        f"{'read':<18}{'bytes':>7}{'wire ms':>9}{'turn ms':>9}{'median ms':>11}"
        f"{'idle ms':>9}{'ratio':>7}{'silence min ms':>16}"
    )
    for row in results["single"]:  # type: ignore[attr-defined]
        print(
            f"{row['read']:<18}{row['bytes']:>7}{row['wire_ms']:>9}{row['turn_ms']:>9}"
            f"{row['median_ms']:>11}{row['idle_ms']:>9}{row['ratio']:>7}"
            f"{row['silence_min_ms']:>16}"
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
