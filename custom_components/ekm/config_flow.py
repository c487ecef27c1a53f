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
    CONF_METERS,
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
from .pyekm import (
    DEFAULT_SERVER,
    Account,
    EkmAuthError,
    EkmCloudClient,
    EkmConnectionError,
    EkmError,
    EkmRateLimitError,
)

KEY_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
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


class EkmConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up an EKM Push account."""

    VERSION = 1
    MINOR_VERSION = 1

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
                    return self.async_create_entry(
                        title=f"EKM Push account {self.unique_id}"
                        if len(self.unique_id or "") < 16
                        else "EKM Push account",
                        data={CONF_API_KEY: key, CONF_SERVER: server},
                    )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_key_schema(), user_input),
            errors=errors,
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
        if user_input is not None:
            selected = set(user_input.pop(CONF_METERS, addresses))
            return self.async_create_entry(
                data={
                    CONF_SCAN_INTERVAL: int(user_input[CONF_SCAN_INTERVAL]),
                    CONF_STALE_THRESHOLD: int(user_input[CONF_STALE_THRESHOLD]),
                    # Stored as exclusions, so meters added to the account later appear.
                    CONF_EXCLUDED_METERS: sorted(set(addresses) - selected),
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
        return self.async_show_form(step_id="init", data_schema=vol.Schema(schema))
