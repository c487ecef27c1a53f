"""``scripts/ekm``: the pyekm command-line tool.

Each transport contributes its subcommands through a module with ``register(subparsers)``
(listed in COMMAND_MODULES); every handler is a coroutine returning an exit code.
Output is JSON (one object per line for streams); keys and passwords are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from importlib import import_module
import json
import sys
from typing import Any, TextIO

from .errors import EkmError
from .models import MeterReading

type Handler = Callable[[argparse.Namespace], Awaitable[int]]

COMMAND_MODULES = ("cli_cloud", "cli_push", "cli_rs485", "cli_lan")


def reading_json(reading: MeterReading, **extra: Any) -> dict[str, Any]:
    """The JSON form of a normalized reading."""
    return {
        "address": reading.address,
        "timestamp_ms": reading.timestamp_ms,
        "time": reading.timestamp.isoformat(),
        "source": str(reading.source),
        "protocol": reading.protocol,
        **extra,
        "values": dict(reading.values),
    }


def emit(obj: Any, out: TextIO | None = None) -> None:
    """Print one JSON document on one line and flush (so pipes see it at once)."""
    stream = out or sys.stdout
    stream.write(json.dumps(obj, sort_keys=False) + "\n")
    stream.flush()


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="ekm", description="EKM Metering command-line tool")
    groups = parser.add_subparsers(dest="group", required=True)
    # __package__, not __name__: run as ``python -m pyekm.cli`` the module is "__main__".
    package = __package__ or __name__.rpartition(".")[0]
    for name in COMMAND_MODULES:
        import_module(f"{package}.{name}").register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the process exit code."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return 130
    except EkmError as err:
        emit({"error": type(err).__name__, "message": str(err)}, sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover - scripts/ekm (tested in a subprocess)
    sys.exit(main())
