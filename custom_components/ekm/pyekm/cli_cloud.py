"""``ekm cloud ...`` subcommands: Account and Realtime APIs."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp

from .cli import emit, reading_json
from .cloud import DEFAULT_SERVER, EkmCloudClient


def register(groups: Any) -> None:
    """Add the ``cloud`` group."""
    cloud = groups.add_parser("cloud", help="EKM Push cloud APIs")
    commands = cloud.add_subparsers(dest="command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--key", required=True, help="EKM Push account key (never printed)")
        parser.add_argument("--server", default=DEFAULT_SERVER, help="EKM server base URL")
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
