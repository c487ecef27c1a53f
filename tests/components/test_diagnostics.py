"""Diagnostics carry the data a maintainer needs and no secret."""

from __future__ import annotations

import json

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from ekmsim.fleet import DEMO_ACCOUNT_KEY, DEMO_METER


async def test_diagnostics_redacted(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, loaded_entry: MockConfigEntry
) -> None:
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded_entry)
    text = json.dumps(diagnostics)
    assert DEMO_ACCOUNT_KEY not in text
    assert diagnostics["entry"]["data"]["api_key"] == "**REDACTED**"
    device = diagnostics["devices"][DEMO_METER]
    assert device["reading"]["values"]["kWh_Tot"] > 0
    assert device["stale"] is False
    assert diagnostics["last_update_success"] is True
