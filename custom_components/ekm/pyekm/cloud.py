"""Async client for the EKM Push cloud: Account API and Realtime API (readMeter).

The key travels as the ``key=`` query parameter (what every EKM example and client
does). It is passed through ``params=`` and never formatted into a URL string that
could reach a log; errors carry no URL (the HTTP and error mapping live in ``http.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import logging
from typing import Any, Final

import aiohttp

from .catalog import normalize_address, to_number
from .errors import EkmApiError, EkmAuthError, EkmError, EkmResponseError
from .http import DEFAULT_TIMEOUT, EkmHttpClient, raise_for_body_error
from .models import Account, DeviceInfo, DeviceKind, GatewayInfo, MeterReading, Source

_LOGGER = logging.getLogger(__name__)

DEFAULT_SERVER: Final = "https://api.ekmpush.com"
# Meters per Realtime request. EKM documents no limit; this keeps the URL well under
# the 8 KiB most servers accept (13 characters per padded address). Change it here.
MAX_METERS_PER_REQUEST: Final = 100
# EKM keeps the 1,000 latest reads per meter, so a larger cnt gains nothing.
MAX_COUNT: Final = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadSet:
    """One meter's entry in a Realtime answer: its good reads, oldest first."""

    address: str
    protocol: str | None
    interval_s: int | None
    gateway_mac: str | None
    readings: tuple[MeterReading, ...]
    bad_reads: int = 0

    @property
    def latest(self) -> MeterReading | None:
        """The newest good reading."""
        return self.readings[-1] if self.readings else None


class EkmCloudClient(EkmHttpClient):
    """EKM Push cloud client. Give it Home Assistant's (or any) aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        key: str,
        *,
        server: str = DEFAULT_SERVER,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(session, key, timeout=timeout)
        self._server = server.rstrip("/")

    @property
    def server(self) -> str:
        """The server base URL (contains no secret)."""
        return self._server

    # --- Account API -------------------------------------------------------------------

    async def async_get_account(self) -> Account:
        """Discover the key's gateways, meters and ioStacks.

        Asks for ``deep`` account data; gateways that come back without their meter list
        are asked for one by one (``account/api/gateway?id=<mac>``) so meters can be
        linked to their gateway.
        """
        data = await self._get_json("/account/api/account", {"deep": "true"})
        if not isinstance(data, Mapping):
            raise EkmResponseError("Account API answer is not a JSON object")
        raise_for_body_error(data)
        parsed = [_parse_gateway(item) for item in _list(data, "gateways")]
        gateways = {gw.mac: gw for gw, _ in filter(None, parsed)}
        missing = [gw.mac for gw, has_list in filter(None, parsed) if not has_list]
        if missing:
            details = await asyncio.gather(
                *(self._async_get_gateway(mac) for mac in missing), return_exceptions=True
            )
            for mac, detail in zip(missing, details, strict=True):
                if isinstance(detail, GatewayInfo):
                    gateways[mac] = detail
                elif isinstance(detail, EkmAuthError):
                    raise detail
                else:
                    _LOGGER.debug("No meter list for a gateway: %s", detail)
        gateway_of = {a: gw.mac for gw in gateways.values() for a in gw.meters}
        devices: dict[str, DeviceInfo] = {}
        for kind, keys in (
            (DeviceKind.METER, ("meters",)),
            (DeviceKind.IOSTACK, ("iostacks", "ioStacks", "io_stacks")),
        ):
            for list_key in keys:
                for item in _list(data, list_key):
                    device = _parse_device(item, kind, gateway_of)
                    if device is not None:
                        devices.setdefault(device.address, device)
        for address, mac in gateway_of.items():
            devices.setdefault(address, DeviceInfo(address=address, gateway_mac=mac))
        return Account(
            key_type=str(data.get("key_type") or "account"),
            host=str(data["host"]) if data.get("host") else None,
            gateways=tuple(gateways.values()),
            devices=tuple(devices[a] for a in sorted(devices)),
            raw={k: v for k, v in data.items() if k != "key"},
        )

    async def _async_get_gateway(self, mac: str) -> GatewayInfo:
        data = await self._get_json("/account/api/gateway", {"id": mac})
        if isinstance(data, Mapping):
            raise_for_body_error(data)
            for item in _list(data, "gateways"):
                parsed = _parse_gateway(item)
                if parsed is not None and parsed[0].mac == mac:
                    return parsed[0]
        raise EkmResponseError("Gateway answer does not describe the gateway")

    # --- Realtime API --------------------------------------------------------------------

    async def async_read_meters(
        self,
        meters: Sequence[str],
        *,
        count: int = 1,
        fields: Sequence[str] | None = None,
        since_ms: int | None = None,
        timezone: str | None = None,
    ) -> dict[str, ReadSet]:
        """Latest reads of many meters, in as few requests as possible.

        Returns the ReadSet of each meter that has data, keyed by 12-digit address.
        Meters with no data (EKM statuses 1000-1003) are simply absent.
        """
        addresses = list(dict.fromkeys(normalize_address(m) for m in meters))
        chunks = [
            addresses[i : i + MAX_METERS_PER_REQUEST]
            for i in range(0, len(addresses), MAX_METERS_PER_REQUEST)
        ]
        results = await asyncio.gather(
            *(self._read_chunk(c, count, fields, since_ms, timezone) for c in chunks)
        )
        merged: dict[str, ReadSet] = {}
        for result in results:
            merged.update(result)
        return merged

    async def _read_chunk(
        self,
        meters: Sequence[str],
        count: int,
        fields: Sequence[str] | None,
        since_ms: int | None,
        timezone: str | None,
    ) -> dict[str, ReadSet]:
        params = {
            "meters": "~".join(meters),
            "fmt": "json",
            "cnt": str(max(1, min(count, MAX_COUNT))),
        }
        if fields:
            params["fields"] = "~".join(fields)
        if since_ms is not None:
            params["since"] = str(since_ms)
        if timezone:
            params["timezone"] = timezone.replace("/", "~")
        try:
            data = await self._get_json("/readMeter", params)
        except EkmApiError as err:
            if err.is_no_data:
                return {}
            raise
        return parse_read_meter(data)

    # --- HTTP ------------------------------------------------------------------------------

    async def _get_json(self, path: str, params: Mapping[str, str]) -> Any:
        return await self._http.get_json(self._server + path, params)


def _parse_gateway(item: object) -> tuple[GatewayInfo, bool] | None:
    """A gateway and whether the answer carried its meter list."""
    if not isinstance(item, Mapping):
        return None
    mac = item.get("mac_address") or item.get("mac") or item.get("id")
    if not isinstance(mac, str) or not mac.strip():
        return None
    meters: list[str] = []
    for meter in item.get("meters") or ():
        address = meter.get("address") if isinstance(meter, Mapping) else meter
        try:
            meters.append(normalize_address(str(address)))
        except ValueError:
            continue
    name = item.get("name")
    info = GatewayInfo(
        mac=mac.strip().lower(),
        name=name if isinstance(name, str) and name else None,
        meters=tuple(meters),
    )
    return info, isinstance(item.get("meters"), list)


def _parse_device(
    item: object, kind: DeviceKind, gateway_of: Mapping[str, str]
) -> DeviceInfo | None:
    raw = item.get("address") if isinstance(item, Mapping) else item
    try:
        address = normalize_address(str(raw))
    except ValueError:
        return None
    name = item.get("name") if isinstance(item, Mapping) else None
    mac = item.get("gateway") if isinstance(item, Mapping) else None
    return DeviceInfo(
        address=address,
        kind=kind,
        gateway_mac=gateway_of.get(address) or (mac.lower() if isinstance(mac, str) else None),
        name=name if isinstance(name, str) and name else None,
    )


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def parse_read_meter(data: Any, source: Source = Source.CLOUD) -> dict[str, ReadSet]:
    """Parse a ``readMeter`` JSON answer into ReadSets keyed by 12-digit address.

    Tolerates numbers or numeric strings, bad reads (``Good`` = 0, skipped), dotted
    keys (``PERR.NR``) and fields pyekm does not know. Reads come back oldest first.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("readMeter"), Mapping):
        raise EkmResponseError("Realtime answer has no readMeter object")
    read_sets = data["readMeter"].get("ReadSet")
    if read_sets is None:
        return {}
    if not isinstance(read_sets, list):
        raise EkmResponseError("Realtime answer's ReadSet is not a list")
    result: dict[str, ReadSet] = {}
    for entry in read_sets:
        if not isinstance(entry, Mapping):
            continue
        try:
            address = normalize_address(str(entry.get("Meter", "")))
        except ValueError:
            continue
        protocol = entry.get("Protocol")
        protocol = protocol.lower() if isinstance(protocol, str) and protocol else None
        readings: list[MeterReading] = []
        bad = 0
        for read in entry.get("ReadData") or ():
            if not isinstance(read, Mapping):
                continue
            stamp = to_number(read.get("Time_Stamp_UTC_ms"))
            if to_number(read.get("Good")) != 1 or stamp is None:
                bad += 1
                continue
            readings.append(
                MeterReading.from_raw(
                    address, read, source, timestamp_ms=int(stamp), protocol=protocol
                )
            )
        readings.sort(key=lambda r: r.timestamp_ms)
        interval = to_number(entry.get("Interval"))
        mac = entry.get("MAC_Addr")
        previous = result.get(address)
        if previous is not None:  # the same meter twice: merge
            readings = sorted(
                {r.timestamp_ms: r for r in (*previous.readings, *readings)}.values(),
                key=lambda r: r.timestamp_ms,
            )
            bad += previous.bad_reads
        result[address] = ReadSet(
            address=address,
            protocol=protocol,
            interval_s=int(interval) if interval else None,
            gateway_mac=mac.lower() if isinstance(mac, str) and mac else None,
            readings=tuple(readings),
            bad_reads=bad,
        )
    return result


__all__ = [
    "DEFAULT_SERVER",
    "MAX_METERS_PER_REQUEST",
    "EkmCloudClient",
    "EkmError",
    "ReadSet",
    "parse_read_meter",
]
