"""Diagnostics carry the data a maintainer needs and no secret (entry and per device)."""

from __future__ import annotations

from collections.abc import AsyncIterator
import json
from pathlib import Path
from typing import Any

from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.ekm.__init__ import bus_identifier
from custom_components.ekm.const import (
    CONF_GATEWAY_KEYS,
    CONF_MQTT_CA_FILE,
    CONF_MQTT_SERVER,
    CONF_SERVER,
    DOMAIN,
)
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    Fleet,
)
from ekmsim.mqtt import MqttSimulator
from tests.components.bus_helpers import (
    BUS_PASSWORD,
    BUS_V3,
    BUS_V4,
    setup_bus_entry,
    virtual_bus,
)

SECRETS = (DEMO_ACCOUNT_KEY, DEMO_GATEWAY_KEY, BUS_PASSWORD)


def _device(hass: HomeAssistant, entry: MockConfigEntry, ident: str) -> dr.DeviceEntry:
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, ident), entry.entry_id)
    assert device is not None, ident
    return device


def _no_secret(diagnostics: Any) -> None:
    text = json.dumps(diagnostics)
    for secret in SECRETS:
        assert secret not in text


async def test_diagnostics_redacted(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, loaded_entry: MockConfigEntry
) -> None:
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded_entry)
    _no_secret(diagnostics)
    assert diagnostics["entry"]["data"]["api_key"] == "**REDACTED**"
    device = diagnostics["devices"][DEMO_METER]
    assert device["reading"]["values"]["kWh_Tot"] > 0
    assert device["stale"] is False
    assert diagnostics["last_update_success"] is True


async def test_cloud_meter_device_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    loaded_entry: MockConfigEntry,
    fleet: Fleet,
    cloud: CloudSimulator,
) -> None:
    """A meter's own diagnostics: its device, newest reading, staleness, pending relays."""
    cloud.faults.command_delay_s = 2.0  # the gateway still holds the command
    relay = f"switch.omnimeter_{int(DEMO_METER)}_relay_1"
    await hass.services.async_call("switch", "turn_on", {"entity_id": relay}, blocking=True)
    device = _device(hass, loaded_entry, DEMO_METER)
    diagnostics = await get_diagnostics_for_device(hass, hass_client, loaded_entry, device)
    _no_secret(diagnostics)
    assert diagnostics["device"]["serial_number"] == DEMO_METER
    assert diagnostics["device"]["model"] == "Omnimeter Pulse v.4"
    meter = diagnostics["meter"]
    assert meter["address"] == DEMO_METER
    assert meter["included"] is True
    assert meter["gateway"] == DEMO_GATEWAY_MAC
    assert meter["stale"] is False
    newest = fleet.history(DEMO_METER)[-1]
    assert meter["reading"]["timestamp_ms"] == int(newest["Time_Stamp_UTC_ms"])
    assert meter["reading"]["values"]["kWh_Tot"] == pytest.approx(float(newest["kWh_Tot"]))
    assert meter["error"] is None
    assert meter["history"] is None  # no recorder here
    assert list(meter["relays_pending"]) == [f"{DEMO_METER} relay 1"]
    assert "gateway" not in diagnostics and "bus" not in diagnostics


async def test_gateway_device_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    loaded_entry: MockConfigEntry,
    fleet: Fleet,
) -> None:
    """A gateway's diagnostics: its meters and EKM's status of it; no push without a key."""
    device = _device(hass, loaded_entry, DEMO_GATEWAY_MAC)
    diagnostics = await get_diagnostics_for_device(hass, hass_client, loaded_entry, device)
    _no_secret(diagnostics)
    gateway = diagnostics["gateway"]
    assert gateway["name"] == "Demo Push3"
    assert set(gateway["meters"]) == set(fleet.gateways[DEMO_GATEWAY_MAC].meters)
    assert gateway["meters"][DEMO_METER]["stale"] is False
    assert gateway["meters"][DEMO_METER]["last_reading"] is not None
    assert gateway["push"] is None
    assert gateway["gateway_status"]["online"] is True
    assert "meter" not in diagnostics


@pytest.fixture
async def broker(fleet: Fleet, tmp_path: Path) -> AsyncIterator[MqttSimulator]:
    """EKM's MQTT broker, simulated over TLS with its own test CA."""
    sim = MqttSimulator(fleet)
    await sim.start(host="127.0.0.1", port=0, cert_dir=tmp_path)
    try:
        yield sim
    finally:
        await sim.stop()


async def test_gateway_push_state_without_its_key(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    cloud: CloudSimulator,
    broker: MqttSimulator,
) -> None:
    """With a gateway key: the stream's state is there, the key is not."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="EKM Push account 1010",
        unique_id="1010",
        data={CONF_API_KEY: DEMO_ACCOUNT_KEY, CONF_SERVER: cloud.url},
        options={
            CONF_GATEWAY_KEYS: {DEMO_GATEWAY_KEY: DEMO_GATEWAY_MAC},
            CONF_MQTT_SERVER: broker.url,
            CONF_MQTT_CA_FILE: str(broker.ca_file),
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    device = _device(hass, entry, DEMO_GATEWAY_MAC)
    diagnostics = await get_diagnostics_for_device(hass, hass_client, entry, device)
    _no_secret(diagnostics)
    push = diagnostics["gateway"]["push"]
    assert push["server"] == broker.url
    assert push["key"] == f"…{DEMO_GATEWAY_KEY[-4:]}"
    assert DEMO_METER in push["meters"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_rs485_device_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    fleet: Fleet,
    tmp_path: Path,
) -> None:
    """A bus meter's diagnostics carry its own error; the bus's its statistics; no password."""
    async with virtual_bus(fleet, tmp_path) as port:
        entry = await setup_bus_entry(hass, port)
        fleet.meters[BUS_V3].responsive = False
        await entry.runtime_data.coordinator.async_refresh()
        await hass.async_block_till_done()

        silent = await get_diagnostics_for_device(
            hass, hass_client, entry, _device(hass, entry, BUS_V3)
        )
        _no_secret(silent)
        assert "NoResponse" in silent["meter"]["error"]
        assert silent["meter"]["reading"]["protocol"] == "v3"  # the last good one

        v4 = await get_diagnostics_for_device(
            hass, hass_client, entry, _device(hass, entry, BUS_V4)
        )
        _no_secret(v4)
        assert v4["meter"]["error"] is None
        assert v4["meter"]["reading"]["values"]["kWh_Tot"] > 0
        assert v4["meter"]["relays_pending"] == {}

        hub = await get_diagnostics_for_device(
            hass, hass_client, entry, _device(hass, entry, bus_identifier(entry))
        )
        _no_secret(hub)
        assert hub["bus"]["stats"]["sessions"] > 0
        assert BUS_V3 in hub["bus"]["errors"]
        assert await hass.config_entries.async_unload(entry.entry_id)
