"""Opening an entry's options the way the frontend does: the menu, then a step."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigFlowResult
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from tests.components.conftest import check_rendered


async def async_open_options(
    hass: HomeAssistant, entry_id: str, step: str | None = None
) -> ConfigFlowResult:
    """The options menu's step ``step`` (default: the entry type's settings)."""
    result = await hass.config_entries.options.async_init(entry_id)
    assert result["type"] is FlowResultType.MENU
    check_rendered(result, "options")
    options: Any = result["menu_options"]
    return await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": step or options[0]}
    )
