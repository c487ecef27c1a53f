"""Fixtures for the Home Assistant integration tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ekm.const import CONF_SERVER, DOMAIN
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_ACCOUNT_KEY


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/ekm in every test."""


def _make_entry(cloud: CloudSimulator, **options: Any) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title="EKM Push account 1010",
        unique_id="1010",
        data={CONF_API_KEY: DEMO_ACCOUNT_KEY, CONF_SERVER: cloud.url},
        options=options,
    )


@pytest.fixture
def make_entry(cloud: CloudSimulator) -> Callable[..., MockConfigEntry]:
    """Make a cloud entry for the demo account on the simulator (options as kwargs)."""
    return lambda **options: _make_entry(cloud, **options)


@pytest.fixture
def entry(cloud: CloudSimulator) -> MockConfigEntry:
    """The demo account's config entry (not yet added)."""
    return _make_entry(cloud)


@pytest.fixture
async def loaded_entry(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    """The demo account, set up."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry
