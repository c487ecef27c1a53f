"""Repairs: a lifetime register that went down (meter replaced or reset), confirmed by the owner.

A lifetime register (``kWh_Tot`` and the like) never goes down on a working meter, so a
lower value is first taken as bad data: the sensor turns unavailable rather than show a
drop. When the lower value persists (``RESET_CONFIRM_READS`` readings), the meter was
most likely replaced or zero-reset: a repair issue names the meter and the register, and
once the owner confirms, the new register is the new baseline. The sensors continue
from it (their ``total_increasing`` statistics take it as a new cycle, so sums never
drop) and the history statistics, which count only rises, continue without a drop too.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow, RepairsFlowResult
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
import probatio as vol

from .const import CONF_API_TOKEN, CONF_SERVER, DOMAIN
from .control import TOKEN_ISSUE_PREFIX
from .flow_helpers import KEY_SELECTOR, async_validate_token
from .pyekm import DEFAULT_SERVER

RESET_CONFIRM_READS = 3
PRIMARY_REGISTER = "kWh_Tot"
_PREFIX = "register_reset"


def reset_issue_id(entry_id: str, address: str) -> str:
    """The repair issue of one meter's lowered register."""
    return f"{_PREFIX}_{entry_id}_{address}"


def signal_accept_reset(entry_id: str, address: str) -> str:
    """Dispatcher signal: the owner accepted the meter's new register values."""
    return f"{DOMAIN}_{entry_id}_{address}_accept_reset"


@callback
def async_raise_register_reset(
    hass: HomeAssistant,
    entry_id: str,
    address: str,
    *,
    meter: str,
    register: str,
    old: float,
    new: float,
) -> None:
    """Ask the owner whether the meter was replaced or reset.

    Every lowered register of the meter calls this; the issue names the total
    (``kWh_Tot``) when it is one of them, else the first register that asked.
    """
    existing = ir.async_get(hass).async_get_issue(DOMAIN, reset_issue_id(entry_id, address))
    if existing is not None and register != PRIMARY_REGISTER:
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        reset_issue_id(entry_id, address),
        is_fixable=True,
        is_persistent=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key="register_reset",
        translation_placeholders={
            "meter": meter,
            "register": register,
            "old": f"{old:g}",
            "new": f"{new:g}",
        },
        data={"entry_id": entry_id, "address": address},
    )


@callback
def async_clear_register_reset(hass: HomeAssistant, entry_id: str, address: str) -> None:
    """The register is back above its old value (it was a glitch): no question."""
    ir.async_delete_issue(hass, DOMAIN, reset_issue_id(entry_id, address))


class RegisterResetFlow(ConfirmRepairFlow):
    """Confirm that the meter was replaced or reset; its sensors then accept the values."""

    def __init__(self, entry_id: str, address: str) -> None:
        super().__init__()
        self._entry_id = entry_id
        self._address = address

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """On confirmation, tell the meter's sensors to take the new baseline."""
        if user_input is not None:
            async_dispatcher_send(self.hass, signal_accept_reset(self._entry_id, self._address))
            return self.async_create_entry(data={})
        issue = ir.async_get(self.hass).async_get_issue(self.handler, self.issue_id)
        placeholders = issue.translation_placeholders if issue else None
        return self.async_show_form(step_id="confirm", description_placeholders=placeholders)


class ApiTokenFlow(RepairsFlow):
    """EKM rejected the API token: enter a new one (or none, to stop using one)."""

    def __init__(self, entry_id: str) -> None:
        super().__init__()
        self._entry_id = entry_id

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> RepairsFlowResult:
        """Straight to the token form."""
        return await self.async_step_token()

    async def async_step_token(self, user_input: dict[str, Any] | None = None) -> RepairsFlowResult:
        """Check the new token with a trigger lookup, store it and reload the entry."""
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        if entry is None:
            return self.async_abort(reason="entry_removed")
        errors: dict[str, str] = {}
        if user_input is not None:
            token = str(user_input.get(CONF_API_TOKEN) or "").strip()
            error = (
                await async_validate_token(
                    self.hass,
                    entry.data[CONF_API_KEY],
                    entry.data.get(CONF_SERVER) or DEFAULT_SERVER,
                    token,
                    set(entry.runtime_data.coordinator.data.gateways)
                    if entry.state is ConfigEntryState.LOADED
                    else set(),
                )
                if token
                else None
            )
            if error is None:
                data = {k: v for k, v in entry.data.items() if k != CONF_API_TOKEN}
                if token:
                    data[CONF_API_TOKEN] = token
                self.hass.config_entries.async_update_entry(entry, data=data)
                self.hass.config_entries.async_schedule_reload(entry.entry_id)
                return self.async_create_entry(data={})
            errors["base"] = error
        return self.async_show_form(
            step_id="token",
            data_schema=vol.Schema({vol.Optional(CONF_API_TOKEN): KEY_SELECTOR}),
            errors=errors,
            description_placeholders={"entry": entry.title},
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """The flow that fixes an EKM repair issue."""
    if issue_id.startswith(_PREFIX) and data is not None:
        return RegisterResetFlow(str(data["entry_id"]), str(data["address"]))
    if issue_id.startswith(TOKEN_ISSUE_PREFIX) and data is not None:
        return ApiTokenFlow(str(data["entry_id"]))
    return ConfirmRepairFlow()
