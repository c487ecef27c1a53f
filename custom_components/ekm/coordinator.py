"""Coordinators: one place where readings from any transport are merged per meter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    HomeAssistantError,
    ServiceValidationError,
)
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .const import (
    ACCOUNT_REFRESH_INTERVAL,
    CONF_EXCLUDED_METERS,
    CONF_METERS,
    CONF_PASSWORDS,
    CONF_SCAN_INTERVAL,
    CONF_STALE_THRESHOLD,
    DEFAULT_LAN_SCAN_INTERVAL,
    DEFAULT_LAN_STALE_THRESHOLD,
    DEFAULT_RS485_SCAN_INTERVAL,
    DEFAULT_RS485_STALE_THRESHOLD,
    DEFAULT_SCAN_INTERVAL,
    DEFAULT_STALE_THRESHOLD,
    DOMAIN,
    GATEWAY_STATUS_INTERVAL,
    LOGGER,
    SAFETY_NET_INTERVAL,
)
from .pyekm import (
    FIELDS,
    DeviceInfo,
    EkmAuthError,
    EkmCloudClient,
    EkmCommandError,
    EkmError,
    EkmPasswordError,
    EkmRateLimitError,
    EkmUnsupportedError,
    GatewayInfo,
    MeterReading,
    ReadSet,
)
from .pyekm.catalog import derive
from .pyekm.lan import EkmLanClient
from .pyekm.rs485.client import EkmBus
from .pyekm.summary import EkmSummaryClient, GatewayStatus

if TYPE_CHECKING:
    from . import EkmConfigEntry


@dataclass(frozen=True, slots=True, kw_only=True)
class EkmData:
    """Everything the entities read: the newest good reading of each meter.

    ``stale`` is part of the data (not computed by entities) so that a meter going
    stale changes the data and the entities are told.
    """

    devices: Mapping[str, DeviceInfo] = field(default_factory=dict)
    gateways: Mapping[str, GatewayInfo] = field(default_factory=dict)
    readings: Mapping[str, MeterReading] = field(default_factory=dict)
    stale: frozenset[str] = frozenset()

    def reading(self, address: str) -> MeterReading | None:
        """The meter's newest reading, or None when there is none or it is stale."""
        if address in self.stale:
            return None
        return self.readings.get(address)


class FieldAges:
    """When each field of each meter was last reported, to carry fields forward.

    A pushed message may carry only some fields. Fields missing from a newer reading
    are carried over from the previous one while their own last report is younger
    than the stale threshold; derived fields are recomputed from the merged values.
    """

    def __init__(self) -> None:
        self._ms: dict[str, dict[str, int]] = {}

    def complete(
        self, reading: MeterReading, known: MeterReading | None, max_age_ms: float
    ) -> MeterReading:
        """The reading with still-fresh fields of the known reading filled in."""
        ages = self._ms.setdefault(reading.address, {})
        for name in reading.values:
            ages[name] = reading.timestamp_ms
        if known is None:
            return reading
        carried = {
            name: value
            for name, value in known.values.items()
            if name not in reading.values
            and not _derived(name)
            and reading.timestamp_ms - ages.get(name, 0) <= max_age_ms
        }
        if not carried:
            return reading
        values = {**carried, **{k: v for k, v in reading.values.items() if not _derived(k)}}
        derive(values)
        return replace(reading, values=values)


def _derived(name: str) -> bool:
    spec = FIELDS.get(name)
    return spec is not None and spec.derived


def update_failed(
    err: EkmError, *, auth_key: str = "invalid_auth", error_key: str = "communication_error"
) -> ConfigEntryAuthFailed | UpdateFailed:
    """The translated coordinator error for an HTTP error (the one mapping of them).

    ``auth_key`` and ``error_key`` name what was asked: EKM's cloud by default, a Push3
    on the local network (``lan_key_rejected``, ``lan_error``) otherwise.
    """
    if isinstance(err, EkmAuthError):
        return ConfigEntryAuthFailed(translation_domain=DOMAIN, translation_key=auth_key)
    if isinstance(err, EkmRateLimitError):
        return UpdateFailed(
            translation_domain=DOMAIN, translation_key="rate_limited", retry_after=err.retry_after
        )
    return UpdateFailed(
        translation_domain=DOMAIN,
        translation_key=error_key,
        translation_placeholders={"error": str(err)},
    )


class EkmCoordinator(DataUpdateCoordinator[EkmData]):
    """Base coordinator: merging, staleness and pushed readings, whatever the transport."""

    config_entry: EkmConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EkmConfigEntry,
        name: str,
        *,
        default_interval: int,
        default_stale: int,
    ) -> None:
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=name,
            update_interval=timedelta(
                seconds=entry.options.get(CONF_SCAN_INTERVAL, default_interval)
            ),
            always_update=False,
        )
        self.stale_after = timedelta(seconds=entry.options.get(CONF_STALE_THRESHOLD, default_stale))
        self.data = EkmData()
        self._ages = FieldAges()
        # The time between each meter's last two readings (how often it reports).
        self.report_interval_ms: dict[str, int] = {}

    def stale_addresses(
        self, readings: Mapping[str, MeterReading], devices: Iterable[str]
    ) -> frozenset[str]:
        """Meters whose newest good read is older than the threshold (or missing)."""
        cutoff_ms = (dt_util.utcnow() - self.stale_after).timestamp() * 1000
        return frozenset(
            address
            for address in devices
            if (reading := readings.get(address)) is None or reading.timestamp_ms < cutoff_ms
        )

    def build_data(
        self,
        incoming: Iterable[MeterReading] = (),
        *,
        devices: Mapping[str, DeviceInfo] | None = None,
        gateways: Mapping[str, GatewayInfo] | None = None,
    ) -> EkmData:
        """New data from the current data, new readings and (optionally) new devices."""
        current = self.data
        devices = current.devices if devices is None else devices
        max_age_ms = self.stale_after.total_seconds() * 1000
        readings = {a: r for a, r in current.readings.items() if a in devices}
        for reading in incoming:
            known = readings.get(reading.address)
            # Older or equal readings never replace a newer one.
            if reading.address in devices and (
                known is None or reading.timestamp_ms > known.timestamp_ms
            ):
                readings[reading.address] = self._ages.complete(reading, known, max_age_ms)
                if known is not None:
                    self.report_interval_ms[reading.address] = (
                        reading.timestamp_ms - known.timestamp_ms
                    )
        return EkmData(
            devices=devices,
            gateways=current.gateways if gateways is None else gateways,
            readings=readings,
            stale=self.stale_addresses(readings, devices),
        )

    def async_push_readings(self, readings: Iterable[MeterReading]) -> None:
        """Apply readings that arrived outside a poll (push, gap fill)."""
        data = self.build_data(readings)
        if data != self.data:
            self.async_set_updated_data(data)

    def async_apply_in_order(self, readings: Iterable[MeterReading]) -> None:
        """Apply readings oldest first, one timestamp at a time (gap fill).

        Each step is its own update, so every recovered reading becomes a state, in
        order; readings not newer than what a meter shows are skipped by the merge.
        """
        groups: dict[int, list[MeterReading]] = {}
        for reading in readings:
            groups.setdefault(reading.timestamp_ms, []).append(reading)
        for stamp in sorted(groups):
            self.async_push_readings(groups[stamp])


class EkmCloudCoordinator(EkmCoordinator):
    """Polls the EKM Push Realtime API; re-reads the account now and then."""

    def __init__(self, hass: HomeAssistant, entry: EkmConfigEntry, client: EkmCloudClient) -> None:
        super().__init__(
            hass,
            entry,
            name=f"{DOMAIN} cloud",
            default_interval=DEFAULT_SCAN_INTERVAL,
            default_stale=DEFAULT_STALE_THRESHOLD,
        )
        self.client = client
        self._account_read_at: datetime | None = None
        self.excluded = frozenset(entry.options.get(CONF_EXCLUDED_METERS, ()))
        self.account_devices: Mapping[str, DeviceInfo] = {}
        # Meters whose gateway's push stream is up: polled only as a safety net.
        self.push_covered: frozenset[str] = frozenset()
        self._full_poll_at: datetime | None = None

    def _to_poll(self, devices: Iterable[str]) -> tuple[list[str], bool]:
        """All meters (a full poll), or push-covered ones left out between safety nets."""
        now = dt_util.utcnow()
        if self._full_poll_at is None or now - self._full_poll_at >= SAFETY_NET_INTERVAL:
            return list(devices), True
        return [a for a in devices if a not in self.push_covered], False

    async def _async_update_data(self) -> EkmData:
        try:
            devices, gateways = await self._async_devices()
            to_poll, full = self._to_poll(devices)
            read_sets = await self.client.async_read_meters(to_poll) if to_poll else {}
            if full:
                self._full_poll_at = dt_util.utcnow()
        except EkmError as err:
            raise update_failed(err) from err
        readings = [read_set.latest for read_set in read_sets.values() if read_set.latest]
        return self.build_data(
            readings, devices=self._link_gateways(devices, read_sets), gateways=gateways
        )

    async def async_read_now(self, addresses: Iterable[str]) -> None:
        """Ask Realtime for some meters now (to confirm a command); failures only logged."""
        try:
            read_sets = await self.client.async_read_meters(list(addresses))
        except EkmError as err:
            LOGGER.debug("Extra Realtime read failed: %s", err)
            return
        self.async_push_readings(rs.latest for rs in read_sets.values() if rs.latest)

    def _link_gateways(
        self, devices: Mapping[str, DeviceInfo], read_sets: Mapping[str, ReadSet]
    ) -> dict[str, DeviceInfo]:
        """Fill in each meter's gateway from the Realtime API where the account did not.

        A link learned once (``MAC_Addr`` of a read) is kept for polls that skip the meter.
        """
        linked: dict[str, DeviceInfo] = {}
        for address, device in devices.items():
            mac = device.gateway_mac
            if mac is None and address in read_sets:
                mac = read_sets[address].gateway_mac
            if mac is None and (known := self.data.devices.get(address)) is not None:
                mac = known.gateway_mac
            linked[address] = (
                device if mac == device.gateway_mac else replace(device, gateway_mac=mac)
            )
        return linked

    async def _async_devices(
        self,
    ) -> tuple[Mapping[str, DeviceInfo], Mapping[str, GatewayInfo]]:
        """The included devices, from the account (re-read every so often)."""
        now = dt_util.utcnow()
        if self._account_read_at is None or now - self._account_read_at >= ACCOUNT_REFRESH_INTERVAL:
            try:
                account = await self.client.async_get_account()
            except EkmAuthError:
                raise
            except EkmError as err:
                if self._account_read_at is None:
                    raise
                LOGGER.debug("Keeping the known meters; account refresh failed: %s", err)
            else:
                self._account_read_at = now
                self.account_devices = {d.address: d for d in account.devices}
                gateways = {gw.mac: gw for gw in account.gateways}
                return self._included(), gateways
        return self._included(), self.data.gateways

    def _included(self) -> dict[str, DeviceInfo]:
        return {a: d for a, d in self.account_devices.items() if a not in self.excluded}


class EkmSummaryCoordinator[T](DataUpdateCoordinator[T]):
    """A slow coordinator on EKM's Summary API for the devices of a cloud entry."""

    config_entry: EkmConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EkmConfigEntry,
        client: EkmSummaryClient,
        cloud: EkmCloudCoordinator,
        *,
        name: str,
        interval: timedelta,
        empty: T,
    ) -> None:
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {name}",
            update_interval=interval,
            always_update=False,
        )
        self.client = client
        self.cloud = cloud
        self.data = empty


class EkmGatewayStatusCoordinator(EkmSummaryCoordinator[Mapping[str, GatewayStatus]]):
    """Polls EKM's gateway status (Summary V2 GStat) for the account's Push3 gateways.

    Optional, as peblar's optional coordinators are: a server without GStat (404) turns
    it off for good and no entity is made.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EkmConfigEntry,
        client: EkmSummaryClient,
        cloud: EkmCloudCoordinator,
    ) -> None:
        super().__init__(
            hass,
            entry,
            client,
            cloud,
            name="gateway status",
            interval=GATEWAY_STATUS_INTERVAL,
            empty={},
        )
        self.available_on_server = True

    async def _async_update_data(self) -> Mapping[str, GatewayStatus]:
        macs = sorted(self.cloud.data.gateways)
        if not macs:
            return {}
        try:
            status = await self.client.async_gateway_status(macs)
        except EkmError as err:
            raise update_failed(err) from err
        if status is None:
            self.available_on_server = False
            self.update_interval = None
            return {}
        return status


# How a failed meter command is reported: the first matching error class wins.
COMMAND_ERRORS: tuple[tuple[type[EkmError], type[HomeAssistantError], str], ...] = (
    (EkmPasswordError, HomeAssistantError, "wrong_password"),
    (EkmUnsupportedError, ServiceValidationError, "not_supported"),
    (EkmCommandError, HomeAssistantError, "command_failed"),
    (EkmError, HomeAssistantError, "bus_error"),
)


class EkmRs485Coordinator(EkmCoordinator):
    """Reads every meter on one RS-485 bus in turn (the bus serializes access)."""

    def __init__(self, hass: HomeAssistant, entry: EkmConfigEntry, bus: EkmBus) -> None:
        super().__init__(
            hass,
            entry,
            name=f"{DOMAIN} rs485",
            default_interval=DEFAULT_RS485_SCAN_INTERVAL,
            default_stale=DEFAULT_RS485_STALE_THRESHOLD,
        )
        self.bus = bus
        meters: Mapping[str, Mapping[str, str]] = entry.data[CONF_METERS]
        # Real address -> address polled (the wildcard for a single meter on the bus).
        self.poll_address = {a: m.get("poll", a) for a, m in meters.items()}
        self.passwords: Mapping[str, str] = entry.data.get(CONF_PASSWORDS, {})
        excluded = set(entry.options.get(CONF_EXCLUDED_METERS, ()))
        self.devices = {
            a: DeviceInfo(address=a) for a in sorted(self.poll_address) if a not in excluded
        }
        self.errors: dict[str, str] = {}  # last error per meter (diagnostics)

    async def _async_update_data(self) -> EkmData:
        readings: list[MeterReading] = []
        failures: list[EkmError] = []
        for address in self.devices:
            try:
                reading = await self.bus.read(self.poll_address[address])
            except EkmError as err:
                failures.append(err)
                self.errors[address] = f"{type(err).__name__}: {err}"
                continue
            self.errors.pop(address, None)
            readings.append(replace(reading, address=address))
        if failures and not readings:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="bus_error",
                translation_placeholders={"port": self.bus.port, "error": str(failures[0])},
            )
        return self.build_data(readings, devices=self.devices)

    async def async_command(
        self,
        address: str,
        command: Callable[[str, str | None], Awaitable[None]],
    ) -> None:
        """Run a write command on a meter, then read it back so entities show the result.

        ``command(poll_address, password)``. Errors become translated exceptions.
        """
        try:
            await command(self.poll_address[address], self.passwords.get(address) or None)
        except EkmError as err:
            kind, key = next(
                (kind, key) for error, kind, key in COMMAND_ERRORS if isinstance(err, error)
            )
            raise kind(
                translation_domain=DOMAIN,
                translation_key=key,
                translation_placeholders={
                    "meter": address,
                    "port": self.bus.port,
                    "error": str(err),
                },
            ) from err
        try:
            reading = await self.bus.read(self.poll_address[address])
        except EkmError:
            await self.async_request_refresh()
        else:
            self.async_push_readings([replace(reading, address=address)])


class EkmLanCoordinator(EkmCoordinator):
    """Polls a Push3 gateway's readMeter API on the local network.

    The gateway answers with the last read it has of each meter, also long after the
    meter stopped answering: such a reading keeps its old ``Time_Stamp_UTC_ms`` and goes
    stale like any other. Meters the gateway lists later are added as they appear.
    """

    def __init__(self, hass: HomeAssistant, entry: EkmConfigEntry, client: EkmLanClient) -> None:
        super().__init__(
            hass,
            entry,
            name=f"{DOMAIN} lan",
            default_interval=DEFAULT_LAN_SCAN_INTERVAL,
            default_stale=DEFAULT_LAN_STALE_THRESHOLD,
        )
        self.client = client
        self.excluded = frozenset(entry.options.get(CONF_EXCLUDED_METERS, ()))
        self.known: set[str] = set(entry.data.get(CONF_METERS, ()))
        self.last_error: str | None = None

    async def _async_update_data(self) -> EkmData:
        try:
            latest = await self.client.async_read_latest()
        except EkmError as err:
            self.last_error = f"{type(err).__name__}: {err}"
            raise update_failed(err, auth_key="lan_key_rejected", error_key="lan_error") from err
        self.last_error = None
        self.known |= latest.keys()
        devices = self.data.devices
        if devices.keys() != self.known - self.excluded:
            devices = {
                a: DeviceInfo(address=a) for a in sorted(self.known) if a not in self.excluded
            }
        return self.build_data(latest.values(), devices=devices)
