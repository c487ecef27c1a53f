"""An RS-485 bus entry on virtual meters, for tests that need one next to a cloud entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ekm.const import (
    CONF_ENTRY_TYPE,
    CONF_METERS,
    CONF_PASSWORDS,
    CONF_SCAN_INTERVAL,
    DOMAIN,
    ENTRY_RS485,
)
from ekmsim.fleet import DEMO_METER, Fleet
from ekmsim.rs485 import VirtualBus

BUS_V4 = DEMO_METER  # 000000010389, v4
BUS_V3 = "000000010388"
BUS_PASSWORD = "24681357"


@asynccontextmanager
async def virtual_bus(fleet: Fleet, tmp_path: Path) -> AsyncIterator[str]:
    """The fleet's v4 and v3 demo meters on one virtual bus; yields the pty path."""
    fleet.meters[BUS_V4].password = BUS_PASSWORD
    bus = VirtualBus([fleet.meters[BUS_V4], fleet.meters[BUS_V3]], baud=115200, turnaround=0.005)
    port = tmp_path / "ttyEKM"
    await bus.open_pty(port)
    try:
        yield str(port)
    finally:
        await bus.close()


async def setup_bus_entry(hass: HomeAssistant, port: str) -> MockConfigEntry:
    """An RS-485 entry for both meters (the v4 one with its password), set up."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"RS-485 {port}",
        unique_id=port,
        data={
            CONF_ENTRY_TYPE: ENTRY_RS485,
            CONF_PORT: port,
            CONF_METERS: {BUS_V4: {"protocol": "v4"}, BUS_V3: {"protocol": "v3"}},
            CONF_PASSWORDS: {BUS_V4: BUS_PASSWORD},
        },
        options={CONF_SCAN_INTERVAL: 5},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry
