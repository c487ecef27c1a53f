"""``ekm cloud relay|command|triggers ...``: the Settings and Trigger APIs.

Added to the ``cloud`` group by ``cli_cloud``. Each command prints EKM's JSON answer (one
trigger a line for ``triggers list``). The API token comes from ``--token`` or
``$EKM_TOKEN``; neither it nor the key is ever printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import sys
from typing import Any

import aiohttp

from .catalog import normalize_address
from .cli import emit
from .control import (
    MAX_RELAY_DURATION_S,
    EkmControlClient,
    normalize_gateway_mac,
    normalize_trigger_uuid,
)

TOKEN_ENV = "EKM_TOKEN"  # noqa: S105 - the variable name, not a secret


def add_commands(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``relay``, ``command`` and ``triggers`` to the ``cloud`` subcommands."""

    def token(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--token", default=None, help=f"EKM API token (default: ${TOKEN_ENV}; never printed)"
        )

    def gateway(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--gateway", required=True, type=_mac, help="Push3 gateway MAC (12 hex digits)"
        )

    relay = commands.add_parser("relay", help="switch a meter's relay through its gateway")
    common(relay)
    token(relay)
    gateway(relay)
    relay.add_argument("--meter", required=True, type=_meter, help="meter number")
    relay.add_argument("--relay", type=int, choices=(1, 2), required=True)
    relay.add_argument("--state", choices=("on", "off"), required=True, help="on = closed")
    relay.add_argument("--duration", type=_duration, default=0, help="seconds (0 = hold)")
    relay.set_defaults(handler=_relay)

    command = commands.add_parser("command", help="send a Settings API command to a gateway")
    common(command)
    token(command)
    gateway(command)
    command.add_argument("--command", required=True, help="command name, e.g. SetRelay")
    command.add_argument("--target", required=True, help="target device type, e.g. meter")
    command.add_argument("--target-id", required=True, help="target id, e.g. a meter number")
    command.add_argument("--params", type=_json_object, default={}, help="a JSON object")
    command.set_defaults(handler=_command)

    triggers = commands.add_parser("triggers", help="look up, create, update, delete triggers")
    actions = triggers.add_subparsers(dest="action", required=True)
    for name, help_text, by_gateway, with_file in (
        ("list", "a gateway's triggers, one a line", True, False),
        ("get", "one trigger", False, False),
        ("create", "create a trigger on a gateway from a JSON file", True, True),
        ("update", "replace a trigger's definition from a JSON file", False, True),
        ("delete", "delete a trigger", False, False),
    ):
        action = actions.add_parser(name, help=help_text)
        common(action)
        token(action)
        if by_gateway:
            gateway(action)
        else:
            action.add_argument(
                "--trigger", required=True, type=_trigger, help="trigger id (32 hex digits)"
            )
        if with_file:
            action.add_argument(
                "--file", required=True, type=_json_file, help='trigger JSON file ("-": stdin)'
            )
        action.set_defaults(handler=_triggers)


def _client(session: aiohttp.ClientSession, args: argparse.Namespace) -> EkmControlClient:
    return EkmControlClient(
        session,
        args.key,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        server=args.server,
        timeout=args.timeout,
    )


async def _relay(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as session:
        receipt = await _client(session, args).set_relay(
            args.gateway, args.meter, args.relay, args.state == "on", args.duration
        )
    emit(receipt.raw)
    return 0


async def _command(args: argparse.Namespace) -> int:
    try:
        target_id = normalize_address(args.target_id) if args.target == "meter" else args.target_id
    except ValueError as err:
        emit({"error": "UsageError", "message": f"--target-id: {err}"}, sys.stderr)
        return 2
    async with aiohttp.ClientSession() as session:
        receipt = await _client(session, args).send_command(
            args.gateway, args.command, args.target, target_id, args.params
        )
    emit(receipt.raw)
    return 0


async def _triggers(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as session:
        client = _client(session, args)
        if args.action == "list":
            for trigger in await client.list_triggers(args.gateway):
                emit(trigger)
            return 0
        if args.action == "get":
            answer = await client.get_trigger(args.trigger)
        elif args.action == "create":
            answer = await client.create_trigger(args.gateway, args.file)
        elif args.action == "update":
            answer = await client.update_trigger(args.trigger, args.file)
        else:
            answer = await client.delete_trigger(args.trigger)
    emit(answer)
    return 0


def _checked(normalize: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a normaliser that raises ValueError."""

    def convert(text: str) -> Any:
        try:
            return normalize(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


_mac = _checked(normalize_gateway_mac)
_meter = _checked(normalize_address)
_trigger = _checked(normalize_trigger_uuid)


def _duration(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= MAX_RELAY_DURATION_S:
        raise argparse.ArgumentTypeError(f"seconds from 0 to {MAX_RELAY_DURATION_S}")
    return seconds


def _json_object(text: str, what: str = "not") -> dict[str, Any]:
    """A JSON object; the error names the position, never the text (it may hold secrets)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"{what} valid JSON (line {err.lineno} column {err.colno})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{what} a JSON object")
    return value


def _json_file(path: str) -> dict[str, Any]:
    """A trigger definition: a JSON object in a file ("-": stdin)."""
    name = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"cannot read {name}: {err.strerror or type(err).__name__}"
        ) from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"cannot read {name}: not UTF-8 text") from None
    return _json_object(text, f"{name} is not")
