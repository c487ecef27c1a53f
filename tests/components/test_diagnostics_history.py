"""A meter's device diagnostics show where its history import stands (needs the recorder)."""

from __future__ import annotations

from datetime import datetime, timedelta

from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.ekm.const import DOMAIN
from ekmsim.fleet import DEMO_ACCOUNT_KEY, DEMO_METER, Fleet, SimClock


@pytest.fixture
def fleet() -> Fleet:
    """The demo account with three days of history, on a clock that moves only when told."""
    world = Fleet.demo(clock=SimClock(manual=True), history_days=3)
    world.backfill(60)
    return world


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder first (it must exist before Home Assistant starts), then ekm."""


async def test_meter_diagnostics_show_its_history_import(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    entry: MockConfigEntry,
) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, DEMO_METER), entry.entry_id)
    assert device is not None
    diagnostics = await get_diagnostics_for_device(hass, hass_client, entry, device)
    assert DEMO_ACCOUNT_KEY not in repr(diagnostics)
    history = diagnostics["meter"]["history"]
    assert history["last_update_success"] is True
    imported_until = datetime.fromisoformat(history["imported_until"])
    assert timedelta(0) <= dt_util.utcnow() - imported_until < timedelta(hours=1)
    assert 90 < history["progress"] <= 100  # the current hour is not complete yet
    assert set(history["statistics"]) == {
        f"ekm:{DEMO_METER}_energy_import",
        f"ekm:{DEMO_METER}_energy_export",
    }
