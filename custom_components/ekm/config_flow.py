"""Config flow: an EKM Push account (key checked with EKM) or a local RS-485 meter bus."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
import hashlib
import re
from typing import Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_API_KEY, CONF_PORT
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import probatio as vol
import serialx
from yarl import URL

from . import EkmConfigEntry
from .const import (
    CONF_ADDRESSES,
    CONF_ADVANCED,
    CONF_ENTRY_TYPE,
    CONF_EXCLUDED_METERS,
    CONF_FULL_READ_EVERY,
    CONF_GATEWAY_KEYS,
    CONF_METERS,
    CONF_MQTT_CA_FILE,
    CONF_MQTT_SERVER,
    CONF_NEW_GATEWAY_KEYS,
    CONF_PASSWORDS,
    CONF_SCAN_INTERVAL,
    CONF_SERVER,
    CONF_SINGLE_METER,
    CONF_STALE_THRESHOLD,
    DEFAULT_FULL_READ_EVERY,
    DEFAULT_RS485_SCAN_INTERVAL,
    DEFAULT_RS485_STALE_THRESHOLD,
    DEFAULT_SCAN_INTERVAL,
    DEFAULT_STALE_THRESHOLD,
    DOMAIN,
    ENTRY_RS485,
    LOGGER,
    MAX_SCAN_INTERVAL,
    MAX_STALE_THRESHOLD,
    MIN_RS485_STALE_THRESHOLD,
    MIN_SCAN_INTERVAL,
    MIN_STALE_THRESHOLD,
    WILDCARD_ADDRESS,
    rs485_min_interval,
)
from .coordinator import EkmCloudCoordinator
from .push import async_check_gateway_key, async_create_ssl_context
from .pyekm import (
    DEFAULT_SERVER,
    Account,
    EkmAuthError,
    EkmCloudClient,
    EkmConnectionError,
    EkmError,
    EkmNoResponseError,
    EkmRateLimitError,
    normalize_address,
)
from .pyekm.mqtt import DEFAULT_MQTT_SERVER, parse_server
from .pyekm.redact import mask
from .pyekm.rs485.client import EkmBus

CONF_PUSH = "push"

KEY_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
KEYS_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD, multiple=True))
URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))


def account_unique_id(key: str) -> str:
    """A stable id for the account behind a key.

    [INF] EKM keys look like unpadded base64 of ``<account id>:<secret>``
    (``MTAxMDoyMDIw`` is ``1010:2020``), so the id part survives a new key for the same
    account (reauth). A key that does not decode that way is identified by its hash.
    """
    bare = key.rstrip("=")
    try:
        decoded = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True).decode("ascii")
    except binascii.Error, UnicodeDecodeError, ValueError:
        decoded = ""
    account_id, sep, secret = decoded.partition(":")
    if sep and account_id.isdigit() and secret:
        return account_id
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _normalize_server(server: str | None) -> str | None:
    """The server base URL, or None if it is not an http(s) URL."""
    text = (server or DEFAULT_SERVER).strip().rstrip("/")
    try:
        url = URL(text)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return text


async def _async_validate(
    hass: HomeAssistant, key: str, server: str
) -> tuple[Account | None, dict[str, str]]:
    """Check the key against the Account API; returns the account or form errors."""
    client = EkmCloudClient(async_get_clientsession(hass), key, server=server)
    try:
        account = await client.async_get_account()
    except EkmAuthError:
        return None, {"base": "invalid_auth"}
    except EkmRateLimitError:
        return None, {"base": "rate_limited"}
    except EkmConnectionError:
        return None, {"base": "cannot_connect"}
    except EkmError as err:
        LOGGER.debug("Unexpected answer while validating an EKM key: %s", err)
        return None, {"base": "invalid_response"}
    if not account.devices:
        return None, {"base": "no_devices"}
    return account, {}


async def _async_validate_gateway_keys(
    hass: HomeAssistant,
    keys: list[str],
    *,
    rest_server: str,
    account_gateways: set[str],
    push: dict[str, Any],
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Check gateway keys: the Account API names their gateway, the broker accepts them.

    Returns ({key: gateway MAC}, form errors, error placeholders).
    """
    server = (push.get(CONF_MQTT_SERVER) or DEFAULT_MQTT_SERVER).strip()
    try:
        parse_server(server)
    except ValueError:
        return {}, {CONF_PUSH: "invalid_mqtt_server"}, {}
    try:
        ssl_context = await async_create_ssl_context(hass, push.get(CONF_MQTT_CA_FILE))
    except (OSError, ValueError) as err:
        LOGGER.debug("Cannot load the broker CA file: %s", err)
        return {}, {CONF_PUSH: "invalid_ca_file"}, {}
    session = async_get_clientsession(hass)
    result: dict[str, str] = {}
    for key in dict.fromkeys(k.strip() for k in keys if k.strip()):
        placeholders = {"key": mask(key)}
        try:
            account = await EkmCloudClient(session, key, server=rest_server).async_get_account()
        except EkmAuthError:
            return {}, {"base": "invalid_gateway_key"}, placeholders
        except EkmError:
            return {}, {"base": "cannot_connect"}, placeholders
        mac = next((gw.mac for gw in account.gateways if gw.mac in account_gateways), None)
        if account.key_type != "gateway" or mac is None:
            return {}, {"base": "gateway_not_on_account"}, placeholders
        try:
            await async_check_gateway_key(key, server=server, ssl_context=ssl_context)
        except EkmAuthError:
            return {}, {"base": "invalid_gateway_key"}, placeholders
        except EkmError, TimeoutError:
            return {}, {"base": "mqtt_cannot_connect"}, placeholders
        result[key] = mac
    return result, {}, {}


def _push_section(defaults: dict[str, Any] | None = None) -> Any:
    defaults = defaults or {}
    return section(
        vol.Schema(
            {
                vol.Optional(
                    CONF_MQTT_SERVER,
                    default=defaults.get(CONF_MQTT_SERVER) or DEFAULT_MQTT_SERVER,
                ): TextSelector(),
                vol.Optional(
                    CONF_MQTT_CA_FILE,
                    description={"suggested_value": defaults.get(CONF_MQTT_CA_FILE)},
                ): TextSelector(),
            }
        ),
        {"collapsed": True},
    )


def _push_options(push: dict[str, Any]) -> dict[str, Any]:
    """The broker settings to store (only what differs from EKM's broker)."""
    options: dict[str, Any] = {}
    server = (push.get(CONF_MQTT_SERVER) or "").strip()
    if server and server != DEFAULT_MQTT_SERVER:
        options[CONF_MQTT_SERVER] = server
    if ca_file := (push.get(CONF_MQTT_CA_FILE) or "").strip():
        options[CONF_MQTT_CA_FILE] = ca_file
    return options


class EkmConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up an EKM Push account."""

    VERSION = 1
    MINOR_VERSION = 1
    _data: dict[str, Any]
    _gateways: set[str]

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: EkmConfigEntry) -> EkmOptionsFlow:
        """The options flow."""
        return EkmOptionsFlow()

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose: an EKM Push account (cloud) or meters on a local RS-485 bus."""
        return self.async_show_menu(step_id="user", menu_options=["cloud", "rs485"])

    async def async_step_cloud(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the account key (and, under Advanced, another EKM server)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            key, server = _key_and_server(user_input)
            if server is None:
                errors[CONF_ADVANCED] = "invalid_server"
            else:
                await self.async_set_unique_id(account_unique_id(key))
                self._abort_if_unique_id_configured()
                account, errors = await _async_validate(self.hass, key, server)
                if account is not None:
                    self._data = {CONF_API_KEY: key, CONF_SERVER: server}
                    self._gateways = {gw.mac for gw in account.gateways}
                    return await self.async_step_gateway_keys()
        return self.async_show_form(
            step_id="cloud",
            data_schema=self.add_suggested_values_to_schema(_key_schema(), user_input),
            errors=errors,
        )

    async def async_step_rs485(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the port and the meter addresses; read each meter before going on."""
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {}
        if user_input is not None:
            port = user_input[CONF_PORT].strip()
            await self.async_set_unique_id(port)
            self._abort_if_unique_id_configured()
            meters, errors, placeholders = await _async_probe_bus(port, user_input)
            if not errors:
                self._data = {CONF_ENTRY_TYPE: ENTRY_RS485, CONF_PORT: port, CONF_METERS: meters}
                return await self.async_step_rs485_passwords()
        return self.async_show_form(
            step_id="rs485",
            data_schema=self.add_suggested_values_to_schema(
                await _async_bus_schema(self.hass), user_input
            ),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_rs485_passwords(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Optional meter passwords (for relays and settings); blank = factory default."""
        meters: dict[str, dict[str, str]] = self._data[CONF_METERS]
        errors: dict[str, str] = {}
        if user_input is not None:
            passwords = {a: str(pw).strip() for a, pw in user_input.items() if str(pw).strip()}
            if any(not (pw.isdigit() and len(pw) == 8) for pw in passwords.values()):
                errors["base"] = "invalid_password"
            elif self.source == SOURCE_RECONFIGURE:
                entry = self._get_reconfigure_entry()
                kept = {
                    a: pw for a, pw in entry.data.get(CONF_PASSWORDS, {}).items() if a in meters
                }
                port = self._data[CONF_PORT]
                return self.async_update_reload_and_abort(
                    entry,
                    unique_id=port,
                    title=f"RS-485 {port}",
                    data_updates={
                        CONF_PORT: port,
                        CONF_METERS: meters,
                        CONF_PASSWORDS: kept | passwords,
                    },
                )
            else:
                return self.async_create_entry(
                    title=f"RS-485 {self._data[CONF_PORT]}",
                    data={**self._data, CONF_PASSWORDS: passwords},
                    options={
                        CONF_SCAN_INTERVAL: max(
                            DEFAULT_RS485_SCAN_INTERVAL, rs485_min_interval(len(meters))
                        )
                    },
                )
        return self.async_show_form(
            step_id="rs485_passwords",
            data_schema=vol.Schema({vol.Optional(a): KEY_SELECTOR for a in meters}),
            errors=errors,
            description_placeholders={"meters": ", ".join(meters)},
            last_step=True,
        )

    async def async_step_gateway_keys(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Optionally add Push3 gateway keys for live updates over MQTT."""
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {}
        if user_input is not None:
            push = user_input.get(CONF_PUSH, {})
            keys, errors, placeholders = await _async_validate_gateway_keys(
                self.hass,
                user_input.get(CONF_GATEWAY_KEYS) or [],
                rest_server=self._data[CONF_SERVER],
                account_gateways=self._gateways,
                push=push,
            )
            if not errors:
                unique_id = self.unique_id or ""
                return self.async_create_entry(
                    title=f"EKM Push account {unique_id}"
                    if len(unique_id) < 16
                    else "EKM Push account",
                    data=self._data,
                    options={CONF_GATEWAY_KEYS: keys, **_push_options(push)} if keys else {},
                )
        schema = vol.Schema(
            {
                vol.Optional(CONF_GATEWAY_KEYS): KEYS_SELECTOR,
                vol.Required(CONF_PUSH): _push_section(),
            }
        )
        return self.async_show_form(
            step_id="gateway_keys",
            data_schema=schema,
            errors=errors,
            description_placeholders=placeholders,
            last_step=True,
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The key stopped working."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new key for the same account."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            key = user_input[CONF_API_KEY].strip()
            await self.async_set_unique_id(account_unique_id(key))
            self._abort_if_unique_id_mismatch(reason="wrong_account")
            account, errors = await _async_validate(
                self.hass, key, entry.data.get(CONF_SERVER) or DEFAULT_SERVER
            )
            if account is not None:
                return self.async_update_reload_and_abort(entry, data_updates={CONF_API_KEY: key})
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_API_KEY): KEY_SELECTOR}),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the key or the server of an existing account (or a bus's port and meters)."""
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_RS485:
            return await self.async_step_reconfigure_rs485(user_input)
        errors: dict[str, str] = {}
        if user_input is not None:
            # The key is never sent back to the form: left empty, the current one stays.
            key, server = _key_and_server(user_input, entry.data[CONF_API_KEY])
            if server is None:
                errors[CONF_ADVANCED] = "invalid_server"
            else:
                await self.async_set_unique_id(account_unique_id(key))
                self._abort_if_unique_id_mismatch(reason="wrong_account")
                account, errors = await _async_validate(self.hass, key, server)
                if account is not None:
                    return self.async_update_reload_and_abort(
                        entry, data_updates={CONF_API_KEY: key, CONF_SERVER: server}
                    )
        suggested = {CONF_ADVANCED: {CONF_SERVER: entry.data.get(CONF_SERVER, DEFAULT_SERVER)}}
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                _key_schema(key_required=False), user_input or suggested
            ),
            errors=errors,
        )

    async def async_step_reconfigure_rs485(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the port or the meters of an RS-485 bus."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {}
        if user_input is not None:
            port = user_input[CONF_PORT].strip()
            loaded = entry.runtime_data.bus if hasattr(entry, "runtime_data") else None
            same = loaded if loaded is not None and port == entry.data[CONF_PORT] else None
            meters, errors, placeholders = await _async_probe_bus(port, user_input, same)
            if not errors:
                self._data = {CONF_ENTRY_TYPE: ENTRY_RS485, CONF_PORT: port, CONF_METERS: meters}
                return await self.async_step_rs485_passwords()
        meters_now: dict[str, dict[str, str]] = entry.data[CONF_METERS]
        single = any(m.get("poll") == WILDCARD_ADDRESS for m in meters_now.values())
        suggested = user_input or {
            CONF_PORT: entry.data[CONF_PORT],
            CONF_ADDRESSES: "" if single else ", ".join(meters_now),
            CONF_SINGLE_METER: single,
        }
        return self.async_show_form(
            step_id="reconfigure_rs485",
            data_schema=self.add_suggested_values_to_schema(
                await _async_bus_schema(self.hass), suggested
            ),
            errors=errors,
            description_placeholders=placeholders,
        )


async def _async_bus_schema(hass: HomeAssistant) -> vol.Schema:
    """Port (the host's serial ports offered, or a URL typed in) and meter addresses."""
    ports = await serialx.async_list_serial_ports()
    options = [
        SelectOptionDict(
            value=p.device,
            label=" - ".join(x for x in (p.device, p.manufacturer, p.product) if x),
        )
        for p in ports
    ]
    return vol.Schema(
        {
            vol.Required(CONF_PORT): SelectSelector(
                SelectSelectorConfig(
                    options=options, custom_value=True, mode=SelectSelectorMode.DROPDOWN
                )
            ),
            vol.Optional(CONF_ADDRESSES, default=""): TextSelector(),
            vol.Optional(CONF_SINGLE_METER, default=False): BooleanSelector(),
        }
    )


async def _async_probe_bus(
    port: str, user_input: dict[str, Any], bus: EkmBus | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, str]]:
    """Read every meter once; returns ({address: {protocol[, poll]}}, errors, placeholders).

    ``bus``: the entry's own bus when reconfiguring the same port (it holds the port).
    """
    single = bool(user_input.get(CONF_SINGLE_METER))
    try:
        addresses = parse_addresses(user_input.get(CONF_ADDRESSES, ""))
    except ValueError as err:
        return {}, {CONF_ADDRESSES: "invalid_address"}, {"meter": str(err)}
    if single:
        addresses = [WILDCARD_ADDRESS]
    elif not addresses:
        return {}, {CONF_ADDRESSES: "no_addresses"}, {}
    meters: dict[str, dict[str, str]] = {}
    owned = bus is None
    try:
        if bus is None:
            bus = EkmBus(port, retries=1)
        for address in addresses:
            try:
                reading = await bus.read(address)
            except EkmNoResponseError:
                return {}, {"base": "no_response"}, {"meter": address}
            meter = {"protocol": "v3" if reading.protocol == "v3" else "v4"}
            if single:
                meter["poll"] = WILDCARD_ADDRESS
            meters[reading.address] = meter
    except EkmConnectionError as err:
        LOGGER.debug("Cannot open %s: %s", port, err)
        return {}, {"base": "cannot_open_port"}, {}
    except EkmError as err:
        LOGGER.debug("Bad answer on %s: %s", port, err)
        return {}, {"base": "bad_response"}, {"meter": address}
    finally:
        if owned and bus is not None:
            await bus.close()
    return meters, {}, {}


def parse_addresses(text: str) -> list[str]:
    """12-digit addresses from a comma/space separated list (ValueError names a bad one)."""
    result: list[str] = []
    for part in re.split(r"[\s,;~]+", text.strip()):
        if not part:
            continue
        try:
            result.append(normalize_address(part))
        except ValueError:
            raise ValueError(part) from None
    return list(dict.fromkeys(result))


def _box(low: int, high: int, unit: str = "s") -> NumberSelector:
    """A whole-number field."""
    return NumberSelector(
        NumberSelectorConfig(
            min=low, max=high, step=1, unit_of_measurement=unit, mode=NumberSelectorMode.BOX
        )
    )


def _meter_select(addresses: list[str]) -> SelectSelector:
    """A multi-select of meter addresses."""
    return SelectSelector(
        SelectSelectorConfig(
            options=[SelectOptionDict(value=a, label=a) for a in addresses],
            multiple=True,
            mode=SelectSelectorMode.LIST,
        )
    )


def _key_and_server(user_input: dict[str, Any], current_key: str = "") -> tuple[str, str | None]:
    """The key (the current one when left empty) and the normalized server, or None."""
    key = (user_input.get(CONF_API_KEY) or "").strip() or current_key
    return key, _normalize_server(user_input.get(CONF_ADVANCED, {}).get(CONF_SERVER))


def _key_schema(*, key_required: bool = True) -> vol.Schema:
    key_marker = vol.Required if key_required else vol.Optional
    return vol.Schema(
        {
            key_marker(CONF_API_KEY): KEY_SELECTOR,
            vol.Required(CONF_ADVANCED): section(
                vol.Schema({vol.Optional(CONF_SERVER, default=DEFAULT_SERVER): URL_SELECTOR}),
                {"collapsed": True},
            ),
        }
    )


class EkmOptionsFlow(OptionsFlowWithReload):
    """Poll interval, stale threshold and which meters to include."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show the options."""
        entry: EkmConfigEntry = self.config_entry
        if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_RS485:
            return await self._async_step_rs485(user_input)
        coordinator = entry.runtime_data.coordinator if hasattr(entry, "runtime_data") else None
        addresses = (
            sorted(coordinator.account_devices)
            if isinstance(coordinator, EkmCloudCoordinator)
            else []
        )
        excluded = set(entry.options.get(CONF_EXCLUDED_METERS, ()))
        current_keys: dict[str, str] = dict(entry.options.get(CONF_GATEWAY_KEYS, {}))
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {}
        if user_input is not None:
            selected = set(user_input.get(CONF_METERS, addresses))
            keep = set(user_input.get(CONF_GATEWAY_KEYS, current_keys.values()))
            push = user_input.get(CONF_PUSH, {})
            new_keys, errors, placeholders = await _async_validate_gateway_keys(
                self.hass,
                [k for k in user_input.get(CONF_NEW_GATEWAY_KEYS) or [] if k not in current_keys],
                rest_server=entry.data.get(CONF_SERVER) or DEFAULT_SERVER,
                account_gateways=set(coordinator.data.gateways) if coordinator else set(),
                push=push,
            )
            if not errors:
                keys = {k: mac for k, mac in current_keys.items() if mac in keep} | new_keys
                return self.async_create_entry(
                    data={
                        CONF_SCAN_INTERVAL: int(user_input[CONF_SCAN_INTERVAL]),
                        CONF_STALE_THRESHOLD: int(user_input[CONF_STALE_THRESHOLD]),
                        # Stored as exclusions, so meters added to the account later appear.
                        CONF_EXCLUDED_METERS: sorted(set(addresses) - selected),
                        **({CONF_GATEWAY_KEYS: keys, **_push_options(push)} if keys else {}),
                    }
                )
        schema: dict[Any, Any] = {
            vol.Required(
                CONF_SCAN_INTERVAL,
                default=entry.options.get(CONF_SCAN_INTERVAL, DEFAULT_SCAN_INTERVAL),
            ): _box(MIN_SCAN_INTERVAL, MAX_SCAN_INTERVAL),
            vol.Required(
                CONF_STALE_THRESHOLD,
                default=entry.options.get(CONF_STALE_THRESHOLD, DEFAULT_STALE_THRESHOLD),
            ): _box(MIN_STALE_THRESHOLD, MAX_STALE_THRESHOLD),
        }
        if addresses:
            schema[
                vol.Required(CONF_METERS, default=[a for a in addresses if a not in excluded])
            ] = _meter_select(addresses)
        if current_keys:
            schema[vol.Optional(CONF_GATEWAY_KEYS, default=sorted(current_keys.values()))] = (
                SelectSelector(
                    SelectSelectorConfig(
                        options=[
                            SelectOptionDict(value=mac, label=f"{mac} (key {mask(key)})")
                            for key, mac in sorted(current_keys.items(), key=lambda kv: kv[1])
                        ],
                        multiple=True,
                        mode=SelectSelectorMode.LIST,
                    )
                )
            )
        schema[vol.Optional(CONF_NEW_GATEWAY_KEYS)] = KEYS_SELECTOR
        schema[vol.Required(CONF_PUSH)] = _push_section(dict(entry.options))
        return self.async_show_form(
            step_id="init",
            data_schema=vol.Schema(schema),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _async_step_rs485(self, user_input: dict[str, Any] | None) -> ConfigFlowResult:
        """Options of an RS-485 bus: poll interval, staleness, full reads, meters."""
        entry: EkmConfigEntry = self.config_entry
        addresses = sorted(entry.data[CONF_METERS])
        minimum = rs485_min_interval(len(addresses))
        options = entry.options
        if user_input is not None:
            selected = set(user_input.get(CONF_METERS, addresses))
            return self.async_create_entry(
                data={
                    CONF_SCAN_INTERVAL: max(minimum, int(user_input[CONF_SCAN_INTERVAL])),
                    CONF_STALE_THRESHOLD: int(user_input[CONF_STALE_THRESHOLD]),
                    CONF_FULL_READ_EVERY: int(user_input[CONF_FULL_READ_EVERY]),
                    CONF_EXCLUDED_METERS: sorted(set(addresses) - selected),
                }
            )

        excluded = set(options.get(CONF_EXCLUDED_METERS, ()))
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_SCAN_INTERVAL,
                    default=options.get(
                        CONF_SCAN_INTERVAL, max(minimum, DEFAULT_RS485_SCAN_INTERVAL)
                    ),
                ): _box(minimum, MAX_SCAN_INTERVAL),
                vol.Required(
                    CONF_STALE_THRESHOLD,
                    default=options.get(CONF_STALE_THRESHOLD, DEFAULT_RS485_STALE_THRESHOLD),
                ): _box(MIN_RS485_STALE_THRESHOLD, MAX_STALE_THRESHOLD),
                vol.Required(
                    CONF_FULL_READ_EVERY,
                    default=options.get(CONF_FULL_READ_EVERY, DEFAULT_FULL_READ_EVERY),
                ): _box(1, 100, "reads"),
                vol.Required(
                    CONF_METERS, default=[a for a in addresses if a not in excluded]
                ): _meter_select(addresses),
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=schema,
            description_placeholders={"minimum": str(minimum)},
        )
