"""``python -m ekmsim``: run the simulated EKM world (cloud APIs, and more) standalone."""

# Extension point: every simulated transport is a Service in SERVICES. A service adds its
# own command-line options and, in start(), serves the shared Fleet if its options ask
# for it, returning an async stop callable (or None when it is not enabled). Services
# that take fault knobs use ``args.sim_faults`` (one cloud Faults, set by run()). To add the
# MQTT broker or the RS-485 bus: define ``SERVICE = Service(...)`` in ekmsim/mqtt.py or
# ekmsim/rs485.py and append it to SERVICES below.

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
import signal
import sys

from .cloud import ADMIN_HELP, CloudSimulator, Faults
from .fleet import Fleet, SimClock, run_ticker

type Stop = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Service:
    """One simulated transport served from the shared fleet."""

    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    start: Callable[[Fleet, argparse.Namespace], Awaitable[Stop | None]]


def _cloud_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "cloud (Account, Realtime, Summary, Settings and Trigger APIs)"
    )
    group.add_argument("--port", type=int, default=8080, help="HTTP port (0 = any free port)")
    group.add_argument("--no-cloud", action="store_true", help="do not serve the cloud APIs")


async def _start_cloud(fleet: Fleet, args: argparse.Namespace) -> Stop | None:
    if args.no_cloud:
        return None
    sim = CloudSimulator(fleet, faults=getattr(args, "sim_faults", None))
    url = await sim.start(args.host, args.port)
    say(f"cloud: {url}  (Realtime {url}/readMeter, Account {url}/account/api/account)")
    say(
        f"summary: {url}/summary  (V2 {url}/summary/api/v2/meter, "
        f"{url}/summary/api/v2/firstlast, {url}/summary/api/v2/gstat)"
    )
    say(f"control: {url}/sendCommand  (Trigger API {url}/api/trigger, bearer token)")
    say("cloud admin endpoints:\n" + ADMIN_HELP.rstrip())
    return sim.stop


CLOUD = Service("cloud", _cloud_arguments, _start_cloud)


def _mqtt_service() -> Service:
    from . import mqtt  # noqa: PLC0415 - keeps `python -m ekmsim --help` light

    return Service("mqtt", mqtt.add_arguments, mqtt.start_service)


def _rs485_service() -> Service:
    from . import rs485  # noqa: PLC0415

    return Service("rs485", rs485.add_arguments, rs485.start_service)


def _lan_service() -> Service:
    from . import lan  # noqa: PLC0415

    return Service("lan", lan.add_arguments, lan.start_service)


SERVICES: list[Service] = [CLOUD, _mqtt_service(), _rs485_service(), _lan_service()]


def say(text: str) -> None:
    """Print a line for the user (flushed, so pipes and tests see it at once)."""
    print(text, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser: world options, then each service's options."""
    parser = argparse.ArgumentParser(prog="python -m ekmsim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--interval", type=int, default=60, help="EKM data interval (s)")
    parser.add_argument("--meters", type=int, default=0, help="generate N meters (0 = demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated fleets")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time speed-up")
    parser.add_argument("--backfill", type=int, default=60, help="intervals of history")
    parser.add_argument(
        "--history", type=int, default=1000, help="reads kept per meter (EKM keeps 1000)"
    )
    parser.add_argument(
        "--history-days",
        type=float,
        default=None,
        help="meters first reported this many days ago (default: early 2023)",
    )
    for service in SERVICES:
        service.add_arguments(parser)
    return parser


def build_fleet(args: argparse.Namespace) -> Fleet:
    """Return the demo fleet, or a generated one with ``--meters N``."""
    clock = SimClock(speed=args.speed)
    if args.meters:
        return Fleet.generate(
            args.meters,
            seed=args.seed,
            clock=clock,
            interval_s=args.interval,
            history_len=args.history,
            history_days=args.history_days,
        )
    fleet = Fleet.demo(
        clock=clock, interval_s=args.interval, history_days=args.history_days, named=True
    )
    fleet.history_len = args.history
    return fleet


def describe(fleet: Fleet) -> None:
    """Print the keys and meters a user needs to talk to the simulator."""
    say(f"account key: {fleet.account_key}")
    for token in fleet.api_tokens.values():
        say(f"API token ({'READ/WRITE' if token.write else 'READ'}): {token.token}")
    for gw in fleet.gateways.values():
        say(f"gateway {gw.mac} ({gw.name}) key: {gw.key}  meters: {' '.join(gw.meters)}")
    for key, address in fleet.meter_keys.items():
        say(f"meter {address} key: {key}  (this meter only)")
    loose = sorted(a for a, m in fleet.meters.items() if m.gateway_mac is None)
    if loose:
        say(f"meters without a gateway: {' '.join(loose)}")


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve every enabled service until ``stop`` is set."""
    fleet = build_fleet(args)
    fleet.backfill(max(0, args.backfill))
    # One set of fault knobs for every service: the cloud's /_sim/faults sets the LAN's.
    if getattr(args, "sim_faults", None) is None:
        args.sim_faults = Faults()
    stops: list[Stop] = []
    try:
        for service in SERVICES:
            stopper = await service.start(fleet, args)
            if stopper is not None:
                stops.append(stopper)
        describe(fleet)
        say("ready (Ctrl-C to stop)")
        await run_ticker(fleet, 1.0, stop)
    finally:
        for stopper in reversed(stops):
            await stopper()


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(args, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; returns the exit code."""
    args = build_parser().parse_args(argv)
    asyncio.run(_main(args))
    say("stopped")
    return 0


__all__ = ["SERVICES", "Service", "build_fleet", "build_parser", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
