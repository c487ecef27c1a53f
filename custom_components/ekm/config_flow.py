"""Config flow: an EKM Push account key, validated against the Account API."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
import hashlib
from typing import Any

from homeassistant.config_entries import (
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
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
from yarl import URL

from . import EkmConfigEntry
from .const import (
    CONF_ADVANCED,
    CONF_EXCLUDED_METERS,
    CONF_GATEWAY_KEYS,
    CONF_METERS,
    CONF_MQTT_CA_FILE,
    CONF_MQTT_SERVER,
    CONF_NEW_GATEWAY_KEYS,
    CONF_SCAN_INTERVAL,
    CONF_SERVER,
    CONF_STALE_THRESHOLD,
    DEFAULT_SCAN_INTERVAL,
    DEFAULT_STALE_THRESHOLD,
    DOMAIN,
    LOGGER,
    MAX_SCAN_INTERVAL,
    MAX_STALE_THRESHOLD,
    MIN_SCAN_INTERVAL,
    MIN_STALE_THRESHOLD,
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
    EkmRateLimitError,
)
from .pyekm.mqtt import DEFAULT_MQTT_SERVER, parse_server
from .pyekm.redact import mask

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
        """Ask for the account key (and, under Advanced, another EKM server)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            key = user_input[CONF_API_KEY].strip()
            server = _normalize_server(user_input.get(CONF_ADVANCED, {}).get(CONF_SERVER))
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
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_key_schema(), user_input),
            errors=errors,
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
        """Change the key or the server of an existing account."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            key = user_input[CONF_API_KEY].strip()
            server = _normalize_server(user_input.get(CONF_ADVANCED, {}).get(CONF_SERVER))
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
        suggested = user_input or {
            CONF_API_KEY: entry.data[CONF_API_KEY],
            CONF_ADVANCED: {CONF_SERVER: entry.data.get(CONF_SERVER, DEFAULT_SERVER)},
        }
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(_key_schema(), suggested),
            errors=errors,
        )


def _key_schema() -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_API_KEY): KEY_SELECTOR,
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
            ): NumberSelector(
                NumberSelectorConfig(
                    min=MIN_SCAN_INTERVAL,
                    max=MAX_SCAN_INTERVAL,
                    step=1,
                    unit_of_measurement="s",
                    mode=NumberSelectorMode.BOX,
                )
            ),
            vol.Required(
                CONF_STALE_THRESHOLD,
                default=entry.options.get(CONF_STALE_THRESHOLD, DEFAULT_STALE_THRESHOLD),
            ): NumberSelector(
                NumberSelectorConfig(
                    min=MIN_STALE_THRESHOLD,
                    max=MAX_STALE_THRESHOLD,
                    step=1,
                    unit_of_measurement="s",
                    mode=NumberSelectorMode.BOX,
                )
            ),
        }
        if addresses:
            schema[
                vol.Required(CONF_METERS, default=[a for a in addresses if a not in excluded])
            ] = SelectSelector(
                SelectSelectorConfig(
                    options=[SelectOptionDict(value=a, label=a) for a in addresses],
                    multiple=True,
                    mode=SelectSelectorMode.LIST,
                )
            )
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
