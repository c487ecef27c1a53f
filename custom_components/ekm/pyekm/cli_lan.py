"""``ekm lan ...`` subcommands: a Push3 gateway's local readMeter API."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import aiohttp

from .cli import emit, reading_json
from .lan import DEFAULT_LAN_TIMEOUT, EkmLanClient, lan_base_url

KEY_ENV = "EKM_LAN_KEY"


def register(groups: Any) -> None:
    """Add the ``lan`` group."""
    lan = groups.add_parser("lan", help="a Push3 gateway's local readMeter API (no cloud)")
    commands = lan.add_subparsers(dest="command", required=True)

    read = commands.add_parser("read", help="normalized reads of the gateway's meters")
    read.add_argument(
        "--host", required=True, type=_host, help="the Push3: HOST[:PORT] (http://... allowed)"
    )
    read.add_argument(
        "--key", default=None, help=f"the Push3's LAN key (default: ${KEY_ENV}; never printed)"
    )
    read.add_argument("--count", type=int, default=1, help="reads per meter (oldest first)")
    read.add_argument(
        "--timeout", type=float, default=DEFAULT_LAN_TIMEOUT, help="seconds per request"
    )
    read.set_defaults(handler=_read)


def _host(text: str) -> str:
    try:
        lan_base_url(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


async def _read(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get(KEY_ENV) or ""
    if not key.strip():
        emit({"error": "UsageError", "message": f"give --key or set ${KEY_ENV}"}, sys.stderr)
        return 2
    if args.count < 1:
        emit({"error": "UsageError", "message": "--count must be 1 or more"}, sys.stderr)
        return 2
    async with aiohttp.ClientSession() as session:
        client = EkmLanClient(session, args.host, key, timeout=args.timeout)
        reads = await client.async_read(args.count)
    for readings in reads.values():
        for reading in readings:
            emit(reading_json(reading, host=client.host))
    return 0
