"""The Activity log (logbook) of a cloud account: no entry per read, an entry per real change."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.ekm.const import CONF_HISTORY, CONF_SERVER, DOMAIN
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_ACCOUNT_KEY, DEMO_METER, Fleet, SimClock

RELAY_1 = f"switch.omnimeter_{int(DEMO_METER)}_relay_1"
REPORTING = f"binary_sensor.omnimeter_{int(DEMO_METER)}_reporting"
LAST_READ = f"sensor.omnimeter_{int(DEMO_METER)}_last_reading"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder first (it must exist before Home Assistant starts), then ekm."""


@pytest.fixture
def fleet() -> Fleet:
    """The demo fleet on a manual clock: a read happens when the test lets a minute pass."""
    world = Fleet.demo(clock=SimClock(manual=True))
    world.backfill(5)
    return world


@pytest.fixture
async def account(hass: HomeAssistant, cloud: CloudSimulator) -> MockConfigEntry:
    """The demo account (no history import) and the logbook, set up."""
    # The logbook depends on the frontend, whose package (hass_frontend) only the
    # development install has; the logbook itself needs nothing of it here.
    hass.config.components.add("frontend")
    assert await async_setup_component(hass, "logbook", {})
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="EKM Push account 1010",
        unique_id="1010",
        data={"api_key": DEMO_ACCOUNT_KEY, CONF_SERVER: cloud.url},
        options={CONF_HISTORY: False},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def _minute(
    hass: HomeAssistant, entry: MockConfigEntry, fleet: Fleet, freezer: FrozenDateTimeFactory
) -> None:
    """A minute passes: every reporting meter reads once and the account is polled."""
    fleet.advance(60)
    freezer.tick(timedelta(seconds=60))
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()


async def _entries(
    hass: HomeAssistant, ws: WebSocketGenerator, entry: MockConfigEntry, since: datetime
) -> list[dict[str, Any]]:
    """The logbook's entries of the entry's entities since ``since``."""
    await async_wait_recording_done(hass)
    ours = {
        e.entity_id for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    client = await ws(hass)
    await client.send_json_auto_id(
        {
            "type": "logbook/get_events",
            "start_time": since.isoformat(),
            "end_time": (dt_util.utcnow() + timedelta(seconds=1)).isoformat(),
        }
    )
    response = await client.receive_json()
    assert response["success"], response
    return [row for row in response["result"] if row.get("entity_id") in ours]


async def test_reads_add_no_logbook_entries(
    hass: HomeAssistant,
    account: MockConfigEntry,
    fleet: Fleet,
    freezer: FrozenDateTimeFactory,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """Minutes of readings of the demo fleet: freshness shows, the Activity log stays quiet."""
    assert er.async_get(hass).async_get(LAST_READ).disabled  # type: ignore[union-attr]
    await _minute(hass, account, fleet, freezer)
    since = dt_util.utcnow()
    seen = []
    for _ in range(5):
        await _minute(hass, account, fleet, freezer)
        reporting = hass.states.get(REPORTING)
        assert reporting is not None and reporting.state == "on"
        seen.append(reporting.attributes["last_reading"])
    newest = account.runtime_data.coordinator.data.readings[DEMO_METER].timestamp
    assert seen[-1] == newest
    assert len(set(seen)) == 5  # a new reading every minute, visible on the sensor
    assert await _entries(hass, hass_ws_client, account, since) == []


async def test_relay_and_reporting_changes_are_logged(
    hass: HomeAssistant,
    account: MockConfigEntry,
    fleet: Fleet,
    freezer: FrozenDateTimeFactory,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """A relay switch and a meter that stops and resumes reporting each get an entry."""
    await _minute(hass, account, fleet, freezer)
    since = dt_util.utcnow()
    freezer.tick(timedelta(seconds=1))  # the logbook starts after ``since``
    await hass.services.async_call("switch", "turn_on", {"entity_id": RELAY_1}, blocking=True)
    await hass.async_block_till_done()
    freezer.tick(timedelta(seconds=11))
    async_fire_time_changed(hass)  # the confirming Realtime read
    await hass.async_block_till_done(wait_background_tasks=True)
    assert hass.states.get(RELAY_1).state == "on"  # type: ignore[union-attr]

    fleet.meters[DEMO_METER].responsive = False
    for _ in range(11):  # past the 10-minute stale threshold
        await _minute(hass, account, fleet, freezer)
    assert hass.states.get(REPORTING).state == "off"  # type: ignore[union-attr]
    stale_since = hass.states.get(REPORTING).attributes["last_reading"]  # type: ignore[union-attr]
    assert stale_since is not None  # the time of the last reading stays shown
    fleet.meters[DEMO_METER].responsive = True
    await _minute(hass, account, fleet, freezer)
    assert hass.states.get(REPORTING).state == "on"  # type: ignore[union-attr]

    rows = await _entries(hass, hass_ws_client, account, since)
    entries = [(row["entity_id"], row["state"]) for row in rows]
    assert entries[0] == (RELAY_1, "on")
    assert [e for e in entries if e[0] == REPORTING] == [(REPORTING, "off"), (REPORTING, "on")]
    # While the meter was stale its relays were unavailable (a change worth an entry);
    # none of its sensors made one.
    relay_2 = f"switch.omnimeter_{int(DEMO_METER)}_relay_2"
    assert {e for e in entries[1:] if e[0] != REPORTING} == {
        (RELAY_1, "unavailable"),
        (RELAY_1, "on"),
        (relay_2, "unavailable"),
        (relay_2, "off"),
    }
