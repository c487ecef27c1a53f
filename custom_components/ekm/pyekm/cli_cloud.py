"""``ekm cloud ...`` subcommands: Account, Realtime and Summary APIs.

The Settings and Trigger API commands (``relay``, ``command``, ``triggers``) live in
``cli_control``.
"""

from __future__ import annotations

import argparse
from datetime import datetime, tzinfo
import sys
from typing import Any

import aiohttp

from .catalog import normalize_address
from .cli import emit, reading_json
from .cli_control import add_commands
from .cloud import DEFAULT_SERVER, EkmCloudClient
from .summary import EkmSummaryClient, Report, zone_info


def register(groups: Any) -> None:
    """Add the ``cloud`` group."""
    cloud = groups.add_parser("cloud", help="EKM Push cloud APIs")
    commands = cloud.add_subparsers(dest="command", required=True)

    def common(parser: argparse.ArgumentParser, server: str | None = DEFAULT_SERVER) -> None:
        parser.add_argument("--key", required=True, help="EKM Push account key (never printed)")
        parser.add_argument("--server", default=server, help="EKM server base URL")
        parser.add_argument("--timeout", type=float, default=20.0, help="seconds per request")

    account = commands.add_parser("account", help="list gateways, meters and ioStacks")
    common(account)
    account.set_defaults(handler=_account)

    realtime = commands.add_parser("realtime", help="latest normalized reads")
    common(realtime)
    realtime.add_argument("--meters", help="meter numbers joined with ~ (default: all)")
    realtime.add_argument("--count", type=int, default=1, help="reads per meter (1-1000)")
    realtime.add_argument("--fields", help="field names joined with ~")
    realtime.add_argument("--since", type=int, help="only reads after this epoch ms")
    realtime.add_argument("--timezone", help="IANA timezone, e.g. America/New_York")
    realtime.set_defaults(handler=_realtime)

    summary = commands.add_parser("summary", help="15-minute to monthly history (Summary API)")
    common(summary, server=None)
    summary.add_argument(
        "--meters", required=True, type=_meters, help="meter numbers joined with ~"
    )
    summary.add_argument("--report", required=True, choices=[str(r) for r in Report])
    for name in ("start", "end"):
        summary.add_argument(
            f"--{name}", required=True, type=_wall_time, help="YYYY-MM-DDTHH:MM in --timezone"
        )
    summary.add_argument(
        "--timezone", default="UTC", type=_zone, help="IANA timezone (default UTC)"
    )
    summary.add_argument("--fields", help="field names or wildcards joined with ~")
    summary.add_argument("--v2", action="store_true", help="ask Summary V2 (beta)")
    summary.set_defaults(handler=_summary)

    add_commands(commands, common)


async def _account(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as session:
        client = EkmCloudClient(session, args.key, server=args.server, timeout=args.timeout)
        account = await client.async_get_account()
    emit(
        {
            "key_type": account.key_type,
            "host": account.host,
            "gateways": [
                {"mac": gw.mac, "name": gw.name, "meters": list(gw.meters)}
                for gw in account.gateways
            ],
            "devices": [
                {"address": d.address, "kind": str(d.kind), "gateway": d.gateway_mac}
                for d in account.devices
            ],
        }
    )
    return 0


async def _realtime(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as session:
        client = EkmCloudClient(session, args.key, server=args.server, timeout=args.timeout)
        if args.meters:
            meters = [m for m in args.meters.split("~") if m]
        else:
            meters = (await client.async_get_account()).addresses
        read_sets = await client.async_read_meters(
            meters,
            count=args.count,
            fields=args.fields.split("~") if args.fields else None,
            since_ms=args.since,
            timezone=args.timezone,
        )
    for address in sorted(read_sets):
        read_set = read_sets[address]
        for reading in read_set.readings:
            emit(reading_json(reading, gateway=read_set.gateway_mac))
    return 0


def _meters(text: str) -> list[str]:
    try:
        meters = [normalize_address(m) for m in text.split("~") if m]
    except ValueError:
        raise argparse.ArgumentTypeError("meter numbers are 1 to 12 digits") from None
    if not meters:
        raise argparse.ArgumentTypeError("no meter number")
    return meters


def _wall_time(text: str) -> datetime:
    """A naive wall time; ``_summary`` puts it in --timezone."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M")
    except ValueError:
        raise argparse.ArgumentTypeError("expected YYYY-MM-DDTHH:MM") from None


def _zone(text: str) -> tuple[str, tzinfo]:
    try:
        return text, zone_info(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


async def _summary(args: argparse.Namespace) -> int:
    name, zone = args.timezone
    # A wall time means its first occurrence when the clock repeats an hour, as for EKM.
    start, end = (args.start.replace(tzinfo=zone), args.end.replace(tzinfo=zone))
    if end <= start:
        emit({"error": "UsageError", "message": "--end must be after --start"}, sys.stderr)
        return 2
    async with aiohttp.ClientSession() as session:
        client = EkmSummaryClient(session, args.key, server=args.server, timeout=args.timeout)
        async for chunk in client.iter_summary(
            args.meters,
            args.report,
            start,
            end,
            timezone=name,
            fields=args.fields.split("~") if args.fields else None,
            v2=args.v2,
        ):
            for period in chunk:
                emit(
                    {
                        "meter": period.address,
                        "start_ms": period.start_ms,
                        "end_ms": period.end_ms,
                        **period.values,
                    }
                )
    return 0
