"""Options flows: one per entry type (EKM Push account, RS-485 bus)."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import (
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_API_KEY
from homeassistant.helpers.selector import (
    BooleanSelector,
    DateSelector,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)
import probatio as vol

from . import EkmConfigEntry
from .const import (
    CONF_API_TOKEN,
    CONF_ENTRY_TYPE,
    CONF_EXCLUDED_METERS,
    CONF_FULL_READ_EVERY,
    CONF_GATEWAY_KEYS,
    CONF_HISTORY,
    CONF_HISTORY_SINCE,
    CONF_METERS,
    CONF_NEW_GATEWAY_KEYS,
    CONF_SCAN_INTERVAL,
    CONF_SERVER,
    CONF_STALE_THRESHOLD,
    DEFAULT_FULL_READ_EVERY,
    DEFAULT_LAN_SCAN_INTERVAL,
    DEFAULT_LAN_STALE_THRESHOLD,
    DEFAULT_RS485_SCAN_INTERVAL,
    DEFAULT_RS485_STALE_THRESHOLD,
    DEFAULT_SCAN_INTERVAL,
    DEFAULT_STALE_THRESHOLD,
    ENTRY_LAN,
    ENTRY_RS485,
    MAX_SCAN_INTERVAL,
    MAX_STALE_THRESHOLD,
    MIN_LAN_SCAN_INTERVAL,
    MIN_LAN_STALE_THRESHOLD,
    MIN_RS485_STALE_THRESHOLD,
    MIN_SCAN_INTERVAL,
    MIN_STALE_THRESHOLD,
    rs485_min_interval,
)
from .coordinator import EkmCloudCoordinator, EkmLanCoordinator
from .flow_helpers import (
    CONF_PUSH,
    KEY_SELECTOR,
    KEYS_SELECTOR,
    async_validate_gateway_keys,
    async_validate_token,
    box,
    meter_select,
    push_options,
    push_section,
)
from .pulse import CONF_PULSE_INPUTS
from .pulse_flow import PulseInputsFlowMixin
from .pyekm import (
    DEFAULT_SERVER,
)
from .pyekm.redact import mask
from .takeover import TakeOverFlowMixin

CONF_FORGET_TOKEN = "forget_api_token"  # noqa: S105 (a field name)
# The settings step of each entry type (an EKM Push key has no entry type).
SETTINGS_STEP = {ENTRY_RS485: "bus", ENTRY_LAN: "lan"}
# Menu entries every entry type has, after its own settings.
MENU_EXTRAS = ("pulse_inputs", "take_over")
OTHER_STEPS_OPTIONS = (CONF_PULSE_INPUTS,)


class EkmOptionsFlow(PulseInputsFlowMixin, TakeOverFlowMixin, OptionsFlowWithReload):
    """The settings of each entry type, pulse inputs, taking over existing sensors."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """A menu: the settings of the entry's type, pulse inputs, taking over sensors."""
        settings = SETTINGS_STEP.get(self.config_entry.data.get(CONF_ENTRY_TYPE, ""), "account")
        return self.async_show_menu(step_id="init", menu_options=[settings, *MENU_EXTRAS])

    async def async_step_account(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Options of an EKM Push key: polling, meters, push, history, API token."""
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
            new_keys, errors, placeholders = await async_validate_gateway_keys(
                self.hass,
                [k for k in user_input.get(CONF_NEW_GATEWAY_KEYS) or [] if k not in current_keys],
                rest_server=entry.data.get(CONF_SERVER) or DEFAULT_SERVER,
                account_gateways=set(coordinator.data.gateways) if coordinator else set(),
                push=push,
            )
            token = str(user_input.get(CONF_API_TOKEN) or "").strip()
            if not errors and token:
                error = await async_validate_token(
                    self.hass,
                    entry.data[CONF_API_KEY],
                    entry.data.get(CONF_SERVER) or DEFAULT_SERVER,
                    token,
                    set(coordinator.data.gateways) if coordinator else set(),
                )
                if error is not None:
                    errors[CONF_API_TOKEN] = error
            if not errors:
                self._store_token(token, forget=bool(user_input.get(CONF_FORGET_TOKEN)))
                keys = {k: mac for k, mac in current_keys.items() if mac in keep} | new_keys
                return self.async_create_entry(
                    data={
                        **self._other_steps_options(),
                        CONF_SCAN_INTERVAL: int(user_input[CONF_SCAN_INTERVAL]),
                        CONF_STALE_THRESHOLD: int(user_input[CONF_STALE_THRESHOLD]),
                        CONF_HISTORY: bool(user_input.get(CONF_HISTORY, True)),
                        **(
                            {CONF_HISTORY_SINCE: user_input[CONF_HISTORY_SINCE]}
                            if user_input.get(CONF_HISTORY_SINCE)
                            else {}
                        ),
                        # Stored as exclusions, so meters added to the account later appear.
                        CONF_EXCLUDED_METERS: sorted(set(addresses) - selected),
                        **({CONF_GATEWAY_KEYS: keys, **push_options(push)} if keys else {}),
                    }
                )
        schema: dict[Any, Any] = {
            vol.Required(
                CONF_SCAN_INTERVAL,
                default=entry.options.get(CONF_SCAN_INTERVAL, DEFAULT_SCAN_INTERVAL),
            ): box(MIN_SCAN_INTERVAL, MAX_SCAN_INTERVAL),
            vol.Required(
                CONF_STALE_THRESHOLD,
                default=entry.options.get(CONF_STALE_THRESHOLD, DEFAULT_STALE_THRESHOLD),
            ): box(MIN_STALE_THRESHOLD, MAX_STALE_THRESHOLD),
        }
        if addresses:
            schema[
                vol.Required(CONF_METERS, default=[a for a in addresses if a not in excluded])
            ] = meter_select(
                addresses,
                {a: d.name for a, d in coordinator.account_devices.items() if d.name}
                if isinstance(coordinator, EkmCloudCoordinator)
                else None,
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
        schema[vol.Required(CONF_HISTORY, default=entry.options.get(CONF_HISTORY, True))] = (
            BooleanSelector()
        )
        since = entry.options.get(CONF_HISTORY_SINCE)
        schema[
            vol.Optional(
                CONF_HISTORY_SINCE, description={"suggested_value": since} if since else None
            )
        ] = DateSelector()
        schema[vol.Optional(CONF_API_TOKEN)] = KEY_SELECTOR
        if entry.data.get(CONF_API_TOKEN):
            schema[vol.Optional(CONF_FORGET_TOKEN, default=False)] = BooleanSelector()
        schema[vol.Required(CONF_PUSH)] = push_section(dict(entry.options))
        return self.async_show_form(
            step_id="account",
            data_schema=vol.Schema(schema),
            errors=errors,
            description_placeholders=placeholders,
        )

    def _other_steps_options(self) -> dict[str, Any]:
        """The options other menu entries own (pulse inputs): a settings step keeps them."""
        options = self.config_entry.options
        return {k: options[k] for k in OTHER_STEPS_OPTIONS if k in options}

    def _store_token(self, token: str, *, forget: bool) -> None:
        """A new API token replaces the stored one; "forget" removes it (entry data)."""
        entry = self.config_entry
        data = dict(entry.data)
        if token:
            data[CONF_API_TOKEN] = token
        elif forget:
            data.pop(CONF_API_TOKEN, None)
        if data != entry.data:
            self.hass.config_entries.async_update_entry(entry, data=data)

    async def async_step_bus(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options of an RS-485 bus: poll interval, staleness, full reads, meters."""
        entry: EkmConfigEntry = self.config_entry
        addresses = sorted(entry.data[CONF_METERS])
        minimum = rs485_min_interval(len(addresses))
        options = entry.options
        if user_input is not None:
            selected = set(user_input.get(CONF_METERS, addresses))
            return self.async_create_entry(
                data={
                    **self._other_steps_options(),
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
                ): box(minimum, MAX_SCAN_INTERVAL),
                vol.Required(
                    CONF_STALE_THRESHOLD,
                    default=options.get(CONF_STALE_THRESHOLD, DEFAULT_RS485_STALE_THRESHOLD),
                ): box(MIN_RS485_STALE_THRESHOLD, MAX_STALE_THRESHOLD),
                vol.Required(
                    CONF_FULL_READ_EVERY,
                    default=options.get(CONF_FULL_READ_EVERY, DEFAULT_FULL_READ_EVERY),
                ): box(1, 100, "reads"),
                vol.Required(
                    CONF_METERS, default=[a for a in addresses if a not in excluded]
                ): meter_select(addresses),
            }
        )
        return self.async_show_form(
            step_id="bus",
            data_schema=schema,
            description_placeholders={"minimum": str(minimum), "count": str(len(addresses))},
        )

    async def async_step_lan(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options of a Push3 on the local network: poll interval, staleness, meters."""
        entry: EkmConfigEntry = self.config_entry
        coordinator = entry.runtime_data.coordinator if hasattr(entry, "runtime_data") else None
        known = coordinator.known if isinstance(coordinator, EkmLanCoordinator) else set()
        addresses = sorted(known | set(entry.data[CONF_METERS]))
        options = entry.options
        if user_input is not None:
            selected = set(user_input.get(CONF_METERS, addresses))
            return self.async_create_entry(
                data={
                    **self._other_steps_options(),
                    CONF_SCAN_INTERVAL: int(user_input[CONF_SCAN_INTERVAL]),
                    CONF_STALE_THRESHOLD: int(user_input[CONF_STALE_THRESHOLD]),
                    CONF_EXCLUDED_METERS: sorted(set(addresses) - selected),
                }
            )
        excluded = set(options.get(CONF_EXCLUDED_METERS, ()))
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_SCAN_INTERVAL,
                    default=options.get(CONF_SCAN_INTERVAL, DEFAULT_LAN_SCAN_INTERVAL),
                ): box(MIN_LAN_SCAN_INTERVAL, MAX_SCAN_INTERVAL),
                vol.Required(
                    CONF_STALE_THRESHOLD,
                    default=options.get(CONF_STALE_THRESHOLD, DEFAULT_LAN_STALE_THRESHOLD),
                ): box(MIN_LAN_STALE_THRESHOLD, MAX_STALE_THRESHOLD),
                vol.Required(
                    CONF_METERS, default=[a for a in addresses if a not in excluded]
                ): meter_select(addresses),
            }
        )
        return self.async_show_form(step_id="lan", data_schema=schema)
