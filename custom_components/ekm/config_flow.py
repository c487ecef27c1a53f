"""Config flow: an EKM Push account (key checked with EKM) or a local RS-485 meter bus."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigFlow,
    ConfigFlowResult,
)
from homeassistant.const import CONF_API_KEY, CONF_HOST, CONF_PORT
from homeassistant.core import callback
from homeassistant.helpers.selector import BooleanSelector
import probatio as vol

from . import EkmConfigEntry
from .const import (
    CONF_ADDRESSES,
    CONF_ADVANCED,
    CONF_API_TOKEN,
    CONF_ENTRY_TYPE,
    CONF_GATEWAY_KEYS,
    CONF_KEY_TYPE,
    CONF_LAN_KEY,
    CONF_METERS,
    CONF_PASSWORDS,
    CONF_SCAN_INTERVAL,
    CONF_SERVER,
    CONF_SINGLE_METER,
    CONF_USE_PUSH,
    DEFAULT_LAN_SCAN_INTERVAL,
    DEFAULT_RS485_SCAN_INTERVAL,
    DOMAIN,
    ENTRY_LAN,
    ENTRY_RS485,
    WILDCARD_ADDRESS,
    KeyType,
    rs485_min_interval,
)
from .flow_helpers import (
    CONF_PUSH,
    KEY_SELECTOR,
    KEYS_SELECTOR,
    account_unique_id,
    advanced_token,
    async_bus_schema,
    async_probe_bus,
    async_probe_lan,
    async_validate,
    async_validate_gateway_keys,
    async_validate_token,
    entry_title,
    key_and_server,
    key_schema,
    lan_schema,
    push_options,
    push_section,
)
from .options_flow import EkmOptionsFlow
from .pyekm import (
    DEFAULT_SERVER,
    Account,
)


class EkmConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up an EKM Push account."""

    VERSION = 1
    MINOR_VERSION = 1
    _data: dict[str, Any]
    _gateways: set[str]
    _title: str
    _account: Account
    _models: dict[str, str]

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: EkmConfigEntry) -> EkmOptionsFlow:
        """The options flow."""
        return EkmOptionsFlow()

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose: EKM Push (cloud), a Push3 on the local network, or a local RS-485 bus."""
        return self.async_show_menu(step_id="user", menu_options=["cloud", "lan", "rs485"])

    async def async_step_cloud(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the account key (and, under Advanced, another EKM server)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            key, server = key_and_server(user_input)
            unique_id = account_unique_id(key)
            if server is None:
                errors[CONF_ADVANCED] = "invalid_server"
            elif any(e.unique_id == unique_id for e in self._async_current_entries()):
                return self.async_abort(reason="already_configured")
            else:
                # Checked first, claimed after: a flow left open with a wrong key must not
                # block a new one with the right key ("already in progress").
                account, errors = await async_validate(self.hass, key, server)
                gateways = {gw.mac for gw in account.gateways} if account else set()
                token = advanced_token(user_input)
                if account is not None and token:
                    error = await async_validate_token(self.hass, key, server, token, gateways)
                    if error is not None:
                        errors[CONF_ADVANCED] = error
                if account is not None and not errors:
                    await self.async_set_unique_id(unique_id)
                    self._abort_if_unique_id_configured()
                    self._data = {CONF_API_KEY: key, CONF_SERVER: server}
                    key_type = KeyType.of(account.key_type)
                    self._data[CONF_KEY_TYPE] = key_type.value
                    if token:
                        self._data[CONF_API_TOKEN] = token
                    self._gateways = gateways
                    self._account = account
                    self._title = entry_title(key_type, account, unique_id)
                    if key_type is KeyType.GATEWAY and gateways:
                        return await self.async_step_gateway_push()
                    if key_type is KeyType.METER:
                        return self._create_entry()
                    return await self.async_step_gateway_keys()
        return self.async_show_form(
            step_id="cloud",
            data_schema=self.add_suggested_values_to_schema(key_schema(), user_input),
            errors=errors,
        )

    async def async_step_lan(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the Push3's address and LAN key; read it before going on."""
        errors: dict[str, str] = {}
        if user_input is not None:
            key = str(user_input[CONF_LAN_KEY]).strip()
            host, models, errors = await async_probe_lan(self.hass, user_input[CONF_HOST], key)
            if not errors:
                # A gateway is known by its meters (its API does not give its MAC): one
                # already set up at another address gets the new address.
                await self.async_set_unique_id(lan_unique_id(models))
                self._abort_if_unique_id_configured(
                    updates={CONF_HOST: host, CONF_LAN_KEY: key}, error="lan_already_configured"
                )
                self._data = {
                    CONF_ENTRY_TYPE: ENTRY_LAN,
                    CONF_HOST: host,
                    CONF_LAN_KEY: key,
                    CONF_METERS: sorted(models),
                }
                self._models = models
                return await self.async_step_lan_confirm()
        return self.async_show_form(
            step_id="lan",
            data_schema=self.add_suggested_values_to_schema(lan_schema(), user_input),
            errors=errors,
        )

    async def async_step_lan_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """List the meters the Push3 serves; add them."""
        host = self._data[CONF_HOST]
        if user_input is not None:
            return self.async_create_entry(
                title=f"Push3 {host}",
                data=self._data,
                options={CONF_SCAN_INTERVAL: DEFAULT_LAN_SCAN_INTERVAL},
            )
        return self.async_show_form(
            step_id="lan_confirm",
            description_placeholders={
                "host": host,
                "count": str(len(self._models)),
                "meters": "\n".join(f"- {a} ({m})" for a, m in self._models.items()),
            },
            last_step=True,
        )

    async def async_step_rs485(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the port and the meter addresses; read each meter before going on."""
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {}
        if user_input is not None:
            port = user_input[CONF_PORT].strip()
            if any(e.unique_id == port for e in self._async_current_entries()):
                return self.async_abort(reason="bus_already_configured")
            meters, errors, placeholders = await async_probe_bus(port, user_input)
            if not errors:
                # Claimed once the bus answered (a failed try must not block the next).
                await self.async_set_unique_id(port)
                self._abort_if_unique_id_configured(error="bus_already_configured")
                self._data = {CONF_ENTRY_TYPE: ENTRY_RS485, CONF_PORT: port, CONF_METERS: meters}
                return await self.async_step_rs485_passwords()
        return self.async_show_form(
            step_id="rs485",
            data_schema=self.add_suggested_values_to_schema(
                await async_bus_schema(self.hass), user_input
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
            keys, errors, placeholders = await async_validate_gateway_keys(
                self.hass,
                user_input.get(CONF_GATEWAY_KEYS) or [],
                rest_server=self._data[CONF_SERVER],
                account_gateways=self._gateways,
                push=push,
            )
            if not errors:
                return self._create_entry(keys, push)
        schema = vol.Schema(
            {
                vol.Optional(CONF_GATEWAY_KEYS): KEYS_SELECTOR,
                vol.Required(CONF_PUSH): push_section(),
            }
        )
        return self.async_show_form(
            step_id="gateway_keys",
            data_schema=schema,
            errors=errors,
            description_placeholders=placeholders,
            last_step=True,
        )

    def _create_entry(
        self, keys: dict[str, str] | None = None, push: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The cloud entry, with push options when it has gateway keys."""
        return self.async_create_entry(
            title=self._title,
            data=self._data,
            options={CONF_GATEWAY_KEYS: keys, **push_options(push or {})} if keys else {},
        )

    async def async_step_gateway_push(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """A gateway key is also that gateway's MQTT key: push on (or polling only)."""
        errors: dict[str, str] = {}
        gateway = next(iter(self._account.gateways))
        placeholders = {"gateway": gateway.name or gateway.mac}
        if user_input is not None:
            push = user_input.get(CONF_PUSH, {})
            keys: dict[str, str] = {}
            if user_input.get(CONF_USE_PUSH, True):
                keys, errors, extra = await async_validate_gateway_keys(
                    self.hass,
                    [self._data[CONF_API_KEY]],
                    rest_server=self._data[CONF_SERVER],
                    account_gateways=self._gateways,
                    push=push,
                )
                placeholders |= extra
            if not errors:
                return self._create_entry(keys, push)
        schema = vol.Schema(
            {
                vol.Required(CONF_USE_PUSH, default=True): BooleanSelector(),
                vol.Required(CONF_PUSH): push_section(),
            }
        )
        return self.async_show_form(
            step_id="gateway_push",
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
        """Ask for a new key for the same account (or the Push3's new LAN key)."""
        entry = self._get_reauth_entry()
        if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_LAN:
            return await self.async_step_reauth_lan(user_input)
        errors: dict[str, str] = {}
        if user_input is not None:
            key = user_input[CONF_API_KEY].strip()
            await self.async_set_unique_id(account_unique_id(key))
            self._abort_if_unique_id_mismatch(reason="wrong_account")
            account, errors = await async_validate(
                self.hass, key, entry.data.get(CONF_SERVER) or DEFAULT_SERVER
            )
            if account is not None:
                return self.async_update_reload_and_abort(entry, data_updates={CONF_API_KEY: key})
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_API_KEY): KEY_SELECTOR}),
            errors=errors,
        )

    async def async_step_reauth_lan(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The Push3 rejected its LAN key: ask for the current one."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            key = str(user_input[CONF_LAN_KEY]).strip()
            _host, _models, errors = await async_probe_lan(
                self.hass, entry.data[CONF_HOST], key, entry.data[CONF_METERS]
            )
            if not errors:
                return self.async_update_reload_and_abort(entry, data_updates={CONF_LAN_KEY: key})
        return self.async_show_form(
            step_id="reauth_lan",
            data_schema=vol.Schema({vol.Required(CONF_LAN_KEY): KEY_SELECTOR}),
            errors=errors,
            description_placeholders={"host": entry.data[CONF_HOST]},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the key or the server of an existing account (or a bus's port and meters)."""
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_RS485:
            return await self.async_step_reconfigure_rs485(user_input)
        if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_LAN:
            return await self.async_step_reconfigure_lan(user_input)
        errors: dict[str, str] = {}
        if user_input is not None:
            # The key is never sent back to the form: left empty, the current one stays.
            key, server = key_and_server(user_input, entry.data[CONF_API_KEY])
            if server is None:
                errors[CONF_ADVANCED] = "invalid_server"
            else:
                await self.async_set_unique_id(account_unique_id(key))
                self._abort_if_unique_id_mismatch(reason="wrong_account")
                account, errors = await async_validate(self.hass, key, server)
                # Left empty, the current token stays (the options can remove it).
                token = advanced_token(user_input) or entry.data.get(CONF_API_TOKEN, "")
                if account is not None and token:
                    gateways = {gw.mac for gw in account.gateways}
                    error = await async_validate_token(self.hass, key, server, token, gateways)
                    if error is not None:
                        errors[CONF_ADVANCED] = error
                if account is not None and not errors:
                    updates = {CONF_API_KEY: key, CONF_SERVER: server}
                    if token:
                        updates[CONF_API_TOKEN] = token
                    return self.async_update_reload_and_abort(entry, data_updates=updates)
        suggested = {CONF_ADVANCED: {CONF_SERVER: entry.data.get(CONF_SERVER, DEFAULT_SERVER)}}
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                key_schema(key_required=False), user_input or suggested
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
            meters, errors, placeholders = await async_probe_bus(port, user_input, same)
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
                await async_bus_schema(self.hass), suggested
            ),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_reconfigure_lan(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the Push3's address or LAN key; it must still serve this entry's meters."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            # The key is never sent back to the form: left empty, the current one stays.
            key = str(user_input.get(CONF_LAN_KEY) or "").strip() or entry.data[CONF_LAN_KEY]
            host, models, errors = await async_probe_lan(
                self.hass, user_input[CONF_HOST], key, entry.data[CONF_METERS]
            )
            if not errors:
                return self.async_update_reload_and_abort(
                    entry,
                    title=f"Push3 {host}",
                    data_updates={
                        CONF_HOST: host,
                        CONF_LAN_KEY: key,
                        CONF_METERS: sorted(set(entry.data[CONF_METERS]) | set(models)),
                    },
                )
        return self.async_show_form(
            step_id="reconfigure_lan",
            data_schema=self.add_suggested_values_to_schema(
                lan_schema(key_required=False), user_input or {CONF_HOST: entry.data[CONF_HOST]}
            ),
            errors=errors,
        )


def lan_unique_id(models: Mapping[str, str]) -> str:
    """A Push3 on the LAN is known by its lowest meter address (its API gives no MAC)."""
    return f"lan_{min(models)}"
