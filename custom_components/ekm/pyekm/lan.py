"""Async client for a Push3 gateway's local ``readMeter`` API (on the LAN, no cloud).

``GET http://<push3>/readMeter?key=<LAN key>&cnt=<N>`` answers an object keyed by 12-digit
meter address, each holding a list of reads (ekm-cloud-api.md §9.1). Values are JSON
numbers except a few strings (``Model``, ``Firmware``, ``Meter_Address``, ``Cos_Theta_*``,
``Meter_Time``, ``Meter_Status_Code*``); the catalog turns them into the same normalized
:class:`MeterReading` the cloud, MQTT and RS-485 produce (``Power_Factor_Ln_n`` derived
from ``Cos_Theta_Ln_n``, the timestamp from ``Time_Stamp_UTC_ms``).

The key travels as the ``key=`` query parameter, passed through ``params=`` and never
formatted into a URL string: logs, errors and ``repr`` carry the host only. The gateway
keeps serving a meter's last read after the meter stops answering; judging staleness by
the reading's timestamp is the caller's business (see DEFAULT_STALE_AFTER_S).
"""

from __future__ import annotations

from collections.abc import Mapping
import ipaddress
import logging
import re
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from .catalog import normalize_address, to_number
from .errors import (
    EkmAuthError,
    EkmResponseError,
    EkmServerError,
)
from .http import NOT_JSON, EkmHttp
from .models import MeterReading, Source
from .rs485.protocol import V3_MODELS, V4_MODELS

_LOGGER = logging.getLogger(__name__)

# --- What is known and what is inferred about the Push3 LAN API ---------------------------
# Known (ekm-cloud-api.md §9.1, from reedr/ha-ekm-local): the path, ``key`` and ``cnt``,
# the body shape, the value types, HTTP 500 with an HTML body for a wrong key, and that
# the gateway keeps serving a stopped meter's last read.
# Everything below marked [INF] is this module's inference; change it here only.
DEFAULT_LAN_PORT: Final = 80
LAN_PATH: Final = "/readMeter"
DEFAULT_LAN_TIMEOUT: Final = 10.0  # [INF] a LAN answer is fast; 10 s covers a busy gateway
# [INF] How many reads a Push3 keeps per meter is unknown; the cloud keeps 1,000, and a
# larger cnt cannot gain anything. Smaller counts are clamped to 1.
LAN_MAX_COUNT: Final = 1000
# A wrong key: HTTP 500 whose body is HTML ([INF]: "HTML" = a text/html Content-Type, or a
# body starting with "<"). A 500 with any other body is a gateway fault (EkmServerError).
# [INF] 401 and 403 are also taken as a rejected key, should a firmware answer so.
WRONG_KEY_STATUS: Final = 500
AUTH_STATUSES: Final = frozenset({401, 403})
AUTH_MESSAGE: Final = "The Push3 rejected the LAN key"
# [INF] What an HTML body starts with (after white space).
HTML_PREFIXES: Final = (b"<",)
# A meter address is 12 digits (§2.5); any other top-level key makes the body malformed.
ADDRESS_RE: Final = re.compile(r"\d{12}")
# [INF] A read without a usable Time_Stamp_UTC_ms (> 0), with Good present and not 1, or
# without any measurement is skipped (logged at debug); the meter's other reads are kept.
# [INF] Protocol: by Model code (the RS-485 model tables), else by fields only one protocol
# sends (v4/v5 share the v4 protocol); None when neither tells.
V4_ONLY_FIELDS: Final = frozenset(
    {"Meter_Status_Code_A", "State_Out", "State_Watts_Dir", "Line_Freq", "Request_Type",
     "CF_Ratio", "Max_Demand_Rst", "kWh_Ln_1", "Reactive_Pwr_Tot"}
)  # fmt: skip
V3_ONLY_FIELDS: Final = frozenset({"Meter_Status_Code"})
# ha-ekm-local's staleness threshold: a read older than this is a stopped meter's last one.
DEFAULT_STALE_AFTER_S: Final = 90.0

_HOSTNAME: Final = re.compile(
    r"(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?"
)


def lan_base_url(host: str) -> str:
    """``http://host[:port]`` of a Push3 from what a user types.

    Accepts ``192.168.1.50``, ``192.168.1.50:8080``, ``push3.local``, ``http://h:p``,
    ``[fe80::1]:80`` and a bare IPv6 address; the host is lower-cased and the default
    port 80 left out. Raises ValueError for anything else: a path, query, fragment or
    user name, a bad port, a scheme other than http, an invalid host name.
    """
    text = host.strip() if isinstance(host, str) else ""
    if not text:
        raise ValueError("No Push3 host given")
    if "://" not in text:
        bare = text.strip("[]")
        if text.count(":") > 1 and _is_ipv6(bare):
            text = f"[{bare}]"
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("Invalid Push3 host or port") from None
    if parts.scheme.lower() != "http":
        raise ValueError("The Push3 LAN API is plain http://")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("Give the Push3 host without a path or query")
    if "@" in parts.netloc:
        raise ValueError("Give the Push3 host without a user name")
    name = (parts.hostname or "").lower().rstrip(".")
    if not name:
        raise ValueError("No Push3 host given")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("The Push3 host has an invalid port")
    if parts.netloc.rpartition("@")[2].endswith(":"):
        raise ValueError("The Push3 host has an invalid port")
    if ":" in name:
        if not _is_ipv6(name) or "%" in name:
            raise ValueError("Invalid IPv6 address for the Push3")
        netloc = f"[{ipaddress.IPv6Address(name).compressed}]"
    elif _HOSTNAME.fullmatch(name):
        if all(label.isdigit() for label in name.rstrip(".").split(".")):
            try:
                ipaddress.IPv4Address(name)
            except ValueError:
                raise ValueError("Invalid IPv4 address for the Push3") from None
        netloc = name
    else:
        raise ValueError("Invalid Push3 host name")
    if port is not None and port != DEFAULT_LAN_PORT:
        netloc += f":{port}"
    return f"http://{netloc}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


class EkmLanClient:
    """One Push3 gateway's local readMeter API. Give it Home Assistant's (or any) session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        host: str,
        key: str,
        *,
        timeout: float = DEFAULT_LAN_TIMEOUT,
    ) -> None:
        """Raises ValueError for an invalid host (see lan_base_url) or an empty key."""
        self._base = lan_base_url(host)
        if not isinstance(key, str) or not key.strip():
            raise ValueError("No LAN key given")
        self._http = EkmHttp(
            session, key.strip(), timeout=timeout, peer=f"the Push3 at {self.host}"
        )

    @property
    def requests(self) -> int:
        """Number of HTTP requests made (diagnostics)."""
        return self._http.requests

    @property
    def host(self) -> str:
        """``host[:port]`` of the gateway: no scheme, no key; safe to show and log."""
        return self._base.removeprefix("http://")

    def __repr__(self) -> str:
        return f"EkmLanClient(host={self.host!r})"

    async def async_read(self, count: int = 1) -> dict[str, list[MeterReading]]:
        """The latest ``count`` reads of every meter of the gateway, oldest first.

        Keyed by 12-digit address (sorted); a meter whose reads are all malformed is absent.
        Raises EkmAuthError (wrong key), EkmTimeoutError / EkmConnectionError (network),
        EkmRateLimitError (429), EkmServerError (other HTTP errors) and EkmResponseError
        (a body that is not the documented JSON shape).
        """
        cnt = max(1, min(int(count), LAN_MAX_COUNT))
        data = await self._get_json({"cnt": str(cnt)})
        return parse_lan_read_meter(data)

    async def async_read_latest(self) -> dict[str, MeterReading]:
        """The newest read of every meter of the gateway (``cnt=1``), by address."""
        return {address: reads[-1] for address, reads in (await self.async_read(1)).items()}

    async def _get_json(self, params: Mapping[str, str]) -> Any:
        status, body, data, content_type = await self._http.exchange(
            "GET", self._base + LAN_PATH, params
        )
        _LOGGER.debug("Push3 %s answered HTTP %s (%d bytes)", self.host, status, len(body))
        html = "html" in content_type or body.lstrip().startswith(HTML_PREFIXES)
        if status in AUTH_STATUSES or (status == WRONG_KEY_STATUS and html):
            raise EkmAuthError(AUTH_MESSAGE)
        if not 200 <= status < 300:
            raise EkmServerError(status)
        if data is NOT_JSON:
            raise EkmResponseError(
                f"The Push3 at {self.host} answered with something other than JSON"
            )
        return data


def parse_lan_read_meter(data: Any) -> dict[str, list[MeterReading]]:
    """Parse a Push3 LAN readMeter body into reads per 12-digit address, oldest first.

    Raises EkmResponseError unless the body is an object of 12-digit addresses to lists;
    a read that is not an object, has no usable timestamp, is a failed read or has no
    measurement is skipped, the meter's other reads kept. Duplicate timestamps collapse.
    """
    if not isinstance(data, Mapping):
        raise EkmResponseError("The Push3 LAN answer is not a JSON object")
    result: dict[str, list[MeterReading]] = {}
    for name, reads in data.items():
        if not isinstance(name, str) or not ADDRESS_RE.fullmatch(name):
            raise EkmResponseError("The Push3 LAN answer has a key that is not a meter address")
        if not isinstance(reads, list):
            raise EkmResponseError("The Push3 LAN answer holds something other than read lists")
        address = normalize_address(name)
        by_stamp: dict[int, MeterReading] = {}
        for read in reads:
            reading = _reading(address, read)
            if reading is not None:
                by_stamp[reading.timestamp_ms] = reading
        if by_stamp:
            result[address] = [by_stamp[stamp] for stamp in sorted(by_stamp)]
    return {address: result[address] for address in sorted(result)}


def _reading(address: str, read: object) -> MeterReading | None:
    if not isinstance(read, Mapping):
        _LOGGER.debug("Skipped a Push3 LAN read of meter %s: not an object", address)
        return None
    stamp = to_number(read.get("Time_Stamp_UTC_ms"))
    if stamp is None or stamp <= 0:
        _LOGGER.debug("Skipped a Push3 LAN read of meter %s: no timestamp", address)
        return None
    if "Good" in read and to_number(read["Good"]) != 1:
        _LOGGER.debug("Skipped a failed Push3 LAN read of meter %s", address)
        return None
    raw = {name: value for name, value in read.items() if isinstance(name, str)}
    reading = MeterReading.from_raw(
        address, raw, Source.LAN, timestamp_ms=int(stamp), protocol=lan_protocol(raw)
    )
    if not reading.has_measurements:
        _LOGGER.debug("Skipped a Push3 LAN read of meter %s with no usable value", address)
        return None
    return reading


def lan_protocol(raw: Mapping[str, object]) -> str | None:
    """'v3' or 'v4' (v4 and v5 share it) from a read's Model code, else from its fields."""
    model = raw.get("Model")
    code = str(model).strip().lower() if isinstance(model, str | int) else ""
    if code in V3_MODELS:
        return "v3"
    if code in V4_MODELS:
        return "v4"
    if any(name in raw for name in V4_ONLY_FIELDS):
        return "v4"
    if any(name in raw for name in V3_ONLY_FIELDS):
        return "v3"
    return None


__all__ = [
    "DEFAULT_LAN_PORT",
    "DEFAULT_LAN_TIMEOUT",
    "DEFAULT_STALE_AFTER_S",
    "LAN_MAX_COUNT",
    "EkmLanClient",
    "lan_base_url",
    "lan_protocol",
    "parse_lan_read_meter",
]
