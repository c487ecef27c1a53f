"""EKM Metering: EKM Omnimeters, ioStacks and Push3 gateways in Home Assistant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import ATTR_RESTORED, CONF_API_KEY, CONF_HOST, CONF_PORT, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from .const import (
    CONF_API_TOKEN,
    CONF_ENTRY_TYPE,
    CONF_EXCLUDED_METERS,
    CONF_FULL_READ_EVERY,
    CONF_GATEWAY_KEYS,
    CONF_HISTORY,
    CONF_KEY_TYPE,
    CONF_LAN_KEY,
    CONF_METERS,
    CONF_MQTT_CA_FILE,
    CONF_MQTT_SERVER,
    CONF_SERVER,
    DEFAULT_FULL_READ_EVERY,
    DOMAIN,
    ENTRY_LAN,
    ENTRY_RS485,
    LOGGER,
    MANUFACTURER,
    KeyType,
)
from .coordinator import (
    EkmCloudCoordinator,
    EkmCoordinator,
    EkmData,
    EkmGatewayStatusCoordinator,
    EkmLanCoordinator,
    EkmRs485Coordinator,
)
from .history import EkmHistoryCoordinator
from .push import EkmPushManager, async_create_ssl_context, issue_id
from .pyekm import DEFAULT_SERVER, DeviceKind, EkmCloudClient
from .pyekm.catalog import model_name
from .pyekm.control import EkmControlClient
from .pyekm.lan import EkmLanClient
from .pyekm.mqtt import DEFAULT_MQTT_SERVER
from .pyekm.redact import redact_url
from .pyekm.rs485.client import EkmBus
from .pyekm.summary import EkmSummaryClient
from .relays import BusRelays, CloudRelays, RelayControl
from .services import async_setup_services

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR, Platform.SWITCH]
RS485_PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
]
# The Push3's readMeter LAN API only reads: no relays or settings.
LAN_PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


@dataclass(slots=True, kw_only=True)
class EkmRuntimeData:
    """What a loaded entry holds."""

    coordinator: EkmCoordinator
    client: EkmCloudClient | None = None
    push: EkmPushManager | None = None
    bus: EkmBus | None = None
    lan: EkmLanClient | None = None
    summary: EkmSummaryClient | None = None
    history: EkmHistoryCoordinator | None = None
    gateway_status: EkmGatewayStatusCoordinator | None = None
    control: EkmControlClient | None = None
    relays: RelayControl | None = None


type EkmConfigEntry = ConfigEntry[EkmRuntimeData]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Set up the integration (services are registered here, once)."""
    async_setup_services(hass)
    return True


def platforms(entry: EkmConfigEntry) -> list[Platform]:
    """The platforms of an entry type."""
    entry_type = entry.data.get(CONF_ENTRY_TYPE)
    if entry_type == ENTRY_RS485:
        return RS485_PLATFORMS
    return LAN_PLATFORMS if entry_type == ENTRY_LAN else PLATFORMS


async def async_setup_entry(hass: HomeAssistant, entry: EkmConfigEntry) -> bool:
    """Set up an EKM Push account, a Push3 on the local network or an RS-485 meter bus."""
    if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_RS485:
        return await _async_setup_rs485(hass, entry)
    if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_LAN:
        return await _async_setup_lan(hass, entry)
    client = EkmCloudClient(
        async_get_clientsession(hass),
        entry.data[CONF_API_KEY],
        server=entry.data.get(CONF_SERVER) or DEFAULT_SERVER,
    )
    coordinator = EkmCloudCoordinator(hass, entry, client)
    await coordinator.async_config_entry_first_refresh()
    push = await _async_push_manager(hass, entry, coordinator, client)
    summary = EkmSummaryClient(
        async_get_clientsession(hass), entry.data[CONF_API_KEY], server=entry.data.get(CONF_SERVER)
    )
    gateway_status = EkmGatewayStatusCoordinator(hass, entry, summary, coordinator)
    await gateway_status.async_refresh()
    history = _history_coordinator(hass, entry, summary, coordinator)
    control = EkmControlClient(
        async_get_clientsession(hass),
        entry.data[CONF_API_KEY],
        token=entry.data.get(CONF_API_TOKEN) or None,
        server=entry.data.get(CONF_SERVER) or DEFAULT_SERVER,
    )
    entry.runtime_data = EkmRuntimeData(
        coordinator=coordinator,
        client=client,
        push=push,
        summary=summary,
        history=history,
        gateway_status=gateway_status if gateway_status.available_on_server else None,
        control=control,
    )
    # A meter key (a tenant's) may not command the gateway: no relay switches for it.
    if KeyType.of(entry.data.get(CONF_KEY_TYPE)) is not KeyType.METER:
        entry.runtime_data.relays = CloudRelays(hass, entry, coordinator, control)

    entry.async_on_unload(coordinator.async_add_listener(_device_syncer(hass, entry)))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    if push is not None:
        push.async_start()
    if history is not None:
        _start_history(hass, entry, history, coordinator, push)
    return True


def _history_coordinator(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    summary: EkmSummaryClient,
    coordinator: EkmCloudCoordinator,
) -> EkmHistoryCoordinator | None:
    """The history importer, unless it is turned off or there is no recorder."""
    if not entry.options.get(CONF_HISTORY, True):
        return None
    if "recorder" not in hass.config.components:
        LOGGER.info("The recorder is not running: EKM history is not imported")
        return None
    return EkmHistoryCoordinator(hass, entry, summary, coordinator)


@callback
def _start_history(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    history: EkmHistoryCoordinator,
    coordinator: EkmCloudCoordinator,
    push: EkmPushManager | None,
) -> None:
    """Run the first import in the background, then hourly and on new data.

    A listener of its own keeps the hourly poll going when every history entity is
    disabled (as opower does). A pushed summary message or a meter added to the
    account asks for a run at once (the coordinator's debouncer merges bursts).
    """
    entry.async_on_unload(history.async_add_listener(lambda: None))
    entry.async_create_background_task(hass, history.async_refresh(), "ekm history import")
    if push is not None:
        push.on_summary = history.async_request_refresh
    known = [coordinator.data.devices]

    @callback
    def _on_devices() -> None:
        devices = coordinator.data.devices
        if devices is not known[0] and devices.keys() - known[0].keys():
            entry.async_create_background_task(
                hass, history.async_request_refresh(), "ekm history for new meters"
            )
        known[0] = devices

    entry.async_on_unload(coordinator.async_add_listener(_on_devices))


async def _async_push_manager(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    coordinator: EkmCloudCoordinator,
    client: EkmCloudClient,
) -> EkmPushManager | None:
    """The MQTT push manager, if the entry has gateway keys."""
    keys: dict[str, str] = entry.options.get(CONF_GATEWAY_KEYS, {})
    macs = set(keys.values())
    for issue in list(ir.async_get(hass).issues.values()):
        prefix = issue_id(entry.entry_id, "")
        stale = issue.issue_id.startswith(prefix) and issue.issue_id[len(prefix) :] not in macs
        if issue.domain == DOMAIN and stale:
            ir.async_delete_issue(hass, DOMAIN, issue.issue_id)
    if not keys:
        return None
    return EkmPushManager(
        hass,
        coordinator,
        client,
        keys,
        server=entry.options.get(CONF_MQTT_SERVER) or DEFAULT_MQTT_SERVER,
        ssl_context=await async_create_ssl_context(hass, entry.options.get(CONF_MQTT_CA_FILE)),
    )


async def _async_setup_rs485(hass: HomeAssistant, entry: EkmConfigEntry) -> bool:
    """Set up the meters on one RS-485 bus."""
    meters: dict[str, dict[str, str]] = entry.data[CONF_METERS]
    bus = EkmBus(
        entry.data[CONF_PORT],
        b_every=entry.options.get(CONF_FULL_READ_EVERY, DEFAULT_FULL_READ_EVERY),
        protocols={m.get("poll", a): m["protocol"] for a, m in meters.items() if "protocol" in m},
    )
    entry.async_on_unload(bus.close)
    coordinator = EkmRs485Coordinator(hass, entry, bus)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = EkmRuntimeData(
        coordinator=coordinator, bus=bus, relays=BusRelays(coordinator)
    )
    await _async_start_with_hub(
        hass,
        entry,
        RS485_PLATFORMS,
        model="RS-485 meter bus",
        name=f"RS-485 {redact_port(entry.data[CONF_PORT])}",
    )
    return True


async def _async_setup_lan(hass: HomeAssistant, entry: EkmConfigEntry) -> bool:
    """Set up the meters a Push3 gateway serves on the local network."""
    client = EkmLanClient(
        async_get_clientsession(hass), entry.data[CONF_HOST], entry.data[CONF_LAN_KEY]
    )
    coordinator = EkmLanCoordinator(hass, entry, client)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = EkmRuntimeData(coordinator=coordinator, lan=client)
    # The readMeter API does not say which gateway it is (no MAC): the gateway's device
    # is this entry's, named by its address on the network.
    await _async_start_with_hub(
        hass,
        entry,
        LAN_PLATFORMS,
        model="Push3 gateway (local network)",
        name=f"Push3 {client.host}",
        configuration_url=f"http://{client.host}/",
    )
    return True


async def _async_start_with_hub(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    entry_platforms: list[Platform],
    *,
    model: str,
    name: str,
    configuration_url: str | None = None,
) -> None:
    """A local entry's own hub device (its meters link to it), device sync, platforms."""
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, bus_identifier(entry))},
        manufacturer=MANUFACTURER,
        model=model,
        name=name,
        configuration_url=configuration_url,
    )
    syncer = _device_syncer(hass, entry, device.id)
    entry.async_on_unload(entry.runtime_data.coordinator.async_add_listener(syncer))
    await hass.config_entries.async_forward_entry_setups(entry, entry_platforms)


def _device_syncer(
    hass: HomeAssistant, entry: EkmConfigEntry, hub_id: str | None = None
) -> Callable[[], None]:
    """Sync devices now, and again on updates that change what the registry shows.

    Runs on every update (each pushed message too), so it only compares: the device and
    gateway maps (the same objects between polls) and each meter's model and firmware.
    """
    known_maps: list[object] = [None, None]
    versions: dict[str, tuple[str | None, str | None]] = {}

    @callback
    def _sync() -> None:
        data = entry.runtime_data.coordinator.data
        changed = False
        for index, current in enumerate((data.devices, data.gateways)):
            if current is not known_maps[index] and current != known_maps[index]:
                changed = True
            known_maps[index] = current
        for address, reading in data.readings.items():
            version = (reading.text("Model"), reading.text("Firmware"))
            if versions.get(address) != version:
                versions[address] = version
                changed = True
        if changed:
            async_sync_devices(hass, entry, data, hub_id=hub_id)

    _sync()
    return _sync


def bus_identifier(entry: EkmConfigEntry) -> str:
    """Device identifier of an entry's own hub: an RS-485 bus, or a Push3 on the LAN.

    (A LAN entry's unique id already starts with ``lan_``.)
    """
    if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_LAN:
        return f"{entry.unique_id}"
    return f"rs485_{entry.unique_id}"


def redact_port(port: str) -> str:
    """The port with any credentials in a URL removed."""
    return redact_url(port) if "://" in port else port


async def async_unload_entry(hass: HomeAssistant, entry: EkmConfigEntry) -> bool:
    """Unload an entry."""
    return await hass.config_entries.async_unload_platforms(entry, platforms(entry))


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: EkmConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Allow removing a device that is no longer on the account, or that is excluded.

    An included meter (or a gateway, or the bus) would only come back at the next sync.
    """
    data = entry.runtime_data.coordinator.data
    keep = set(data.devices) | set(data.gateways) | {bus_identifier(entry)}
    return not any(ident[0] == DOMAIN and ident[1] in keep for ident in device.identifiers)


@callback
def async_sync_devices(
    hass: HomeAssistant, entry: EkmConfigEntry, data: EkmData, *, hub_id: str | None = None
) -> None:
    """Create or update a device per gateway and meter; disable excluded ones, remove gone.

    Devices are made here, in one place, so that gateways exist before the meters that
    link to them (``via_device_id``) and model/firmware follow the newest reading.

    A meter excluded in the options keeps its device, disabled by the integration (which
    disables its entities with it), so that the owner's names, entity ids and enabled
    entities are all back when it is included again; only a meter that is no longer on
    the account (or bus) is removed.
    """
    registry = dr.async_get(hass)
    gateway_ids: dict[str, str] = {}
    for mac, gateway in data.gateways.items():
        device = registry.async_get_or_create(
            config_entry_id=entry.entry_id,
            identifiers={(DOMAIN, mac)},
            connections={(dr.CONNECTION_NETWORK_MAC, dr.format_mac(mac))},
            manufacturer=MANUFACTURER,
            model="Push3 gateway",
            name=gateway.name or f"Push3 {mac}",
        )
        gateway_ids[mac] = device.id
    for address, info in data.devices.items():
        reading = data.readings.get(address)
        model_code = reading.text("Model") if reading else None
        protocol = reading.protocol if reading else None
        is_iostack = info.kind is DeviceKind.IOSTACK
        device = registry.async_get_or_create(
            config_entry_id=entry.entry_id,
            identifiers={(DOMAIN, address)},
            manufacturer=MANUFACTURER,
            model="ioStack" if is_iostack else model_name(model_code, protocol),
            model_id=model_code,
            name=info.display_name,
            serial_number=address,
            sw_version=reading.text("Firmware") if reading else None,
            via_device_id=gateway_ids.get(info.gateway_mac or "", hub_id),
        )
        if device.disabled_by is dr.DeviceEntryDisabler.INTEGRATION:  # included again
            registry.async_update_device(device.id, disabled_by=None)
    coordinator = entry.runtime_data.coordinator
    configured = set(
        coordinator.account_devices
        if isinstance(coordinator, EkmCloudCoordinator)
        else entry.data.get(CONF_METERS, {})
    )
    excluded = set(entry.options.get(CONF_EXCLUDED_METERS, ())) & configured
    known = set(data.devices) | set(data.gateways) | {bus_identifier(entry)}
    for device in dr.async_entries_for_config_entry(registry, entry.entry_id):
        idents = {i[1] for i in device.identifiers if i[0] == DOMAIN}
        if not idents or idents & known:
            continue
        if not idents & excluded:
            registry.async_remove_device(device.id)
        elif device.disabled_by is None:
            registry.async_update_device(device.id, disabled_by=dr.DeviceEntryDisabler.INTEGRATION)
            # Its entities were unloaded before they were disabled: they left "restored"
            # unavailable states, which nothing removes until a restart.
            for entity in er.async_entries_for_device(
                er.async_get(hass), device.id, include_disabled_entities=True
            ):
                state = hass.states.get(entity.entity_id)
                if state is not None and state.attributes.get(ATTR_RESTORED):
                    hass.states.async_remove(entity.entity_id)
