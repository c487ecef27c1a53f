"""``ekm rs485 ...`` subcommands: local RS-485 (frame tools, reads, relay, clock)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
import os
import time
from typing import Any

from .catalog import model_name, normalize_address
from .cli import emit, reading_json
from .rs485 import protocol as p
from .rs485.client import EkmBus

PASSWORD_ENV = "EKM_METER_PASSWORD"  # noqa: S105 - the variable name, not a secret


def register(groups: Any) -> None:
    """Add the ``rs485`` group."""
    rs485 = groups.add_parser("rs485", help="local RS-485 (Omnimeter v3/v4/v5)")
    commands = rs485.add_subparsers(dest="command", required=True)

    decode = commands.add_parser("decode", help="validate and decode a 255-byte response")
    decode.add_argument("hex", nargs="+", help="the frame in hex (spaces allowed)")
    decode.add_argument(
        "--kwh-scale", type=int, default=0, choices=(0, 1, 2), help="kWh_Scale for a B frame"
    )
    decode.add_argument("--address", help="check the address echo against this meter")
    decode.set_defaults(handler=_decode)

    crc = commands.add_parser("crc", help="EKM CRC of bytes (or check a whole frame)")
    crc.add_argument("hex", nargs="+", help="bytes in hex (spaces allowed)")
    crc.set_defaults(handler=_crc)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--port", required=True, help="/dev/ttyUSB0, socket://host:port or rfc2217://..."
        )
        parser.add_argument(
            "--address", required=True, help="12-digit meter number (999999999999: the only one)"
        )
        parser.add_argument("--timeout", type=float, default=1.0, help="response timeout (s)")
        parser.add_argument("--retries", type=int, default=2, help="retries per request")

    def password(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--password",
            default=None,
            help=f"8-digit meter password (default: ${PASSWORD_ENV} or 00000000; never printed)",
        )

    read = commands.add_parser("read", help="read a meter (one JSON line per read)")
    common(read)
    read.add_argument("--count", type=int, default=1, help="number of reads")
    read.add_argument("--interval", type=float, default=0.0, help="seconds between reads")
    read.add_argument("--b-every", type=int, default=10, help="request B every N reads")
    read.set_defaults(handler=_read)

    relay = commands.add_parser("relay", help="switch relay 1 or 2 (v4/v5)")
    common(relay)
    relay.add_argument("--relay", type=int, choices=(1, 2), required=True)
    relay.add_argument("--state", choices=("on", "off"), required=True, help="on = closed")
    relay.add_argument("--duration", type=int, default=0, help="seconds (0 = hold)")
    password(relay)
    relay.set_defaults(handler=_relay)

    set_time = commands.add_parser("set-time", help="set the meter clock to local time")
    common(set_time)
    password(set_time)
    set_time.set_defaults(handler=_set_time)


def _bytes(parts: list[str]) -> bytes:
    try:
        return p.parse_hex(" ".join(parts))
    except ValueError as err:
        raise SystemExit(f"ekm rs485: {err}") from None


def _address(text: str) -> str:
    try:
        return normalize_address(text)
    except ValueError as err:
        raise SystemExit(f"ekm rs485: {err}") from None


def _bus(args: argparse.Namespace) -> EkmBus:
    args.address = _address(args.address)
    pw = getattr(args, "password", None) or os.environ.get(PASSWORD_ENV) or p.DEFAULT_PASSWORD
    try:
        p.password_frame(pw)
        if getattr(args, "relay", None) is not None:
            p.relay_frame(args.relay, args.state == "on", args.duration)
        return EkmBus(
            args.port,
            password=pw,
            retries=args.retries,
            response_timeout=args.timeout,
            frame_timeout=args.timeout + 0.5,
            b_every=getattr(args, "b_every", 10),
        )
    except ValueError as err:
        raise SystemExit(f"ekm rs485: {err}") from None


async def _decode(args: argparse.Namespace) -> int:
    frame = _bytes(args.hex)
    address = _address(args.address) if args.address else None
    reading = p.parse_frame(frame, address=address, kwh_scale=args.kwh_scale)
    kind = p.frame_request(frame)
    emit(
        reading_json(
            reading,
            request={"v3": "v3", "00": "A", "01": "B"}[kind.value],
            model_name=model_name(p.frame_model(frame), reading.protocol),
        )
    )
    return 0


async def _crc(args: argparse.Namespace) -> int:
    data = _bytes(args.hex)
    register = p.crc16_modbus(data)
    out: dict[str, Any] = {
        "length": len(data),
        "crc": p.ekm_crc(data).hex(" "),
        "register": f"0x{register:04X}",
    }
    if len(data) == p.FRAME_LEN and data[0] == p.STX:
        out["frame_crc_ok"] = p.frame_crc_ok(data)
    elif len(data) > 3 and data[0] == p.SOH and data[-3] == p.ETX:
        out["frame_crc_ok"] = p.ekm_crc(data[1:-2]) == data[-2:]
    emit(out)
    return 0


async def _read(args: argparse.Namespace) -> int:
    bus = _bus(args)
    try:
        for i in range(max(1, args.count)):
            if i and args.interval > 0:
                await asyncio.sleep(args.interval)
            start = time.perf_counter()
            reading = await bus.read(args.address)
            elapsed = round((time.perf_counter() - start) * 1000, 1)
            emit(reading_json(reading, elapsed_ms=elapsed, port=bus.port))
    finally:
        await bus.close()
    return 0


async def _relay(args: argparse.Namespace) -> int:
    bus = _bus(args)
    try:
        closed = args.state == "on"
        await bus.set_relay(args.address, args.relay, closed, args.duration)
    finally:
        await bus.close()
    emit(
        {
            "address": args.address,
            "relay": args.relay,
            "state": args.state,
            "duration_s": args.duration,
            "ok": True,
        }
    )
    return 0


async def _set_time(args: argparse.Namespace) -> int:
    bus = _bus(args)
    when = datetime.now().replace(microsecond=0)
    try:
        await bus.set_time(args.address, when)
    finally:
        await bus.close()
    emit(
        {
            "address": args.address,
            "time": when.isoformat(),
            "meter_weekday": p.meter_weekday(when),
            "ok": True,
        }
    )
    return 0
