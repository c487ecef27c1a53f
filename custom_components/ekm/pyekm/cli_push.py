"""``ekm push``: print what EKM's MQTT broker pushes, one JSON line per reading."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .cli import emit, reading_json
from .models import MeterReading
from .mqtt import DEFAULT_MQTT_SERVER, EkmPushStream, SummaryReading, create_ssl_context


def register(groups: Any) -> None:
    """Add the ``push`` command (no subcommands)."""
    push = groups.add_parser("push", help="stream readings pushed by EKM's MQTT broker")
    push.add_argument(
        "--gateway-key",
        action="append",
        required=True,
        help="Push3 gateway key (never printed); repeat for more gateways",
    )
    push.add_argument(
        "--server",
        default=DEFAULT_MQTT_SERVER,
        help=f"mqtts://host:port (default {DEFAULT_MQTT_SERVER})",
    )
    push.add_argument("--ca", help="extra CA certificate file to trust (tests, development)")
    push.add_argument("--count", type=int, default=0, help="stop after N lines (0: never)")
    push.add_argument(
        "--summary", action="store_true", help="also print 15-minute summary messages"
    )
    push.set_defaults(handler=_push)


async def _push(args: argparse.Namespace) -> int:
    context = await asyncio.get_running_loop().run_in_executor(None, create_ssl_context, args.ca)
    stream = EkmPushStream(
        args.gateway_key, server=args.server, ssl_context=context, summary=args.summary
    )
    printed = 0
    async with stream.connect() as events:
        async for event in events:
            if isinstance(event, MeterReading):
                emit(reading_json(event))
            elif isinstance(event, SummaryReading):  # pragma: no branch
                emit(_summary_json(event))
            printed += 1
            if printed == args.count:
                break
    return 0


def _summary_json(summary: SummaryReading) -> dict[str, Any]:
    return {
        "summary": True,
        "address": summary.address,
        "start_ms": summary.start_ms,
        "end_ms": summary.end_ms,
        "source": str(summary.source),
        "values": dict(summary.values),
    }
