"""Normalized data shared by every transport (cloud, MQTT, RS-485)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .catalog import FIELDS, Kind, Value, normalize_address, normalize_values


class Source(StrEnum):
    """Which transport produced a reading."""

    CLOUD = "cloud"
    MQTT = "mqtt"
    RS485 = "rs485"
    LAN = "lan"  # a Push3 gateway's local readMeter API


class DeviceKind(StrEnum):
    """What an EKM address belongs to."""

    METER = "meter"
    IOSTACK = "iostack"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReading:
    """One good read of one meter: EKM field names, numbers already scaled.

    ``values`` never contains a failed read's data: a read with ``Good`` = 0 is not
    turned into a MeterReading at all.
    """

    address: str
    timestamp_ms: int
    source: Source
    values: Mapping[str, Value]
    protocol: str | None = None

    @property
    def timestamp(self) -> datetime:
        """The read time (UTC)."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def number(self, name: str) -> float | None:
        """A numeric field, or None when absent or not numeric."""
        value = self.values.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        return None

    @property
    def has_measurements(self) -> bool:
        """Whether any known field other than per-read bookkeeping is present."""
        return any(
            (spec := FIELDS.get(name)) is not None and spec.kind is not Kind.METADATA
            for name in self.values
        )

    def text(self, name: str) -> str | None:
        """A text field, or None when absent."""
        value = self.values.get(name)
        return value if isinstance(value, str) else None

    @classmethod
    def from_raw(
        cls,
        address: str | int,
        raw: Mapping[str, object],
        source: Source,
        *,
        timestamp_ms: int | None = None,
        protocol: str | None = None,
    ) -> MeterReading:
        """Build a reading from a raw field mapping (cloud read, MQTT message, frame)."""
        values = normalize_values(raw)
        stamp = values.get("Time_Stamp_UTC_ms")
        if timestamp_ms is None:
            timestamp_ms = int(stamp) if isinstance(stamp, int | float) else now_ms()
        return cls(
            address=normalize_address(address),
            timestamp_ms=timestamp_ms,
            source=source,
            values=values,
            protocol=protocol,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayInfo:
    """A Push3 gateway on the account."""

    mac: str
    name: str | None = None
    meters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """A meter or ioStack on the account."""

    address: str
    kind: DeviceKind = DeviceKind.METER
    gateway_mac: str | None = None
    name: str | None = None

    @property
    def display_name(self) -> str:
        """EKM's name for it, else its kind and address without the leading zeros.

        "Omnimeter 10389" rather than "Omnimeter 000000010389": cards cut long names,
        and the zeros are what every address shares.
        """
        if self.name:
            return self.name
        kind = "ioStack" if self.kind is DeviceKind.IOSTACK else "Omnimeter"
        return f"{kind} {self.address.lstrip('0') or '0'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """What the Account API says about a key."""

    key_type: str
    host: str | None
    gateways: tuple[GatewayInfo, ...]
    devices: tuple[DeviceInfo, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def addresses(self) -> list[str]:
        """Every meter and ioStack address, sorted."""
        return sorted(device.address for device in self.devices)


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(datetime.now(UTC).timestamp() * 1000)
