"""A Push3 gateway on the local network: setup, sensors, staleness, errors, reconfigure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_HOST, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.ekm.const import (
    CONF_ENTRY_TYPE,
    CONF_EXCLUDED_METERS,
    CONF_LAN_KEY,
    CONF_METERS,
    CONF_SCAN_INTERVAL,
    CONF_STALE_THRESHOLD,
    DOMAIN,
    ENTRY_LAN,
)
from ekmsim.fleet import DEMO_METER, DEMO_SUBPANEL_METER
from tests.components.flows import async_open_options
from tests.conftest import Push3Lan

POWER = f"sensor.omnimeter_{int(DEMO_METER)}_power"
SUBPANEL_POWER = f"sensor.omnimeter_{int(DEMO_SUBPANEL_METER)}_power"


async def _flow(hass: HomeAssistant, host: str, key: str) -> Any:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU and "lan" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "lan"}
    )
    assert result["step_id"] == "lan"
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: host, CONF_LAN_KEY: key}
    )


@pytest.fixture
def lan_entry(push3_lan: Push3Lan) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"Push3 {push3_lan.host}",
        unique_id=f"lan_{DEMO_SUBPANEL_METER}",
        data={
            CONF_ENTRY_TYPE: ENTRY_LAN,
            CONF_HOST: push3_lan.host,
            CONF_LAN_KEY: push3_lan.key,
            CONF_METERS: sorted([DEMO_METER, DEMO_SUBPANEL_METER]),
        },
        options={CONF_SCAN_INTERVAL: 10, CONF_STALE_THRESHOLD: 90},
    )


@pytest.fixture
async def loaded_lan(hass: HomeAssistant, lan_entry: MockConfigEntry) -> MockConfigEntry:
    lan_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(lan_entry.entry_id)
    await hass.async_block_till_done()
    return lan_entry


async def test_setup_through_the_flow(
    hass: HomeAssistant,
    push3_lan: Push3Lan,
    rendered: Callable[[Any, str], None],
    guard_secrets: Callable[..., None],
) -> None:
    guard_secrets(push3_lan.key, "not-the-key")
    result = await _flow(hass, push3_lan.host, "not-the-key")
    assert result["errors"] == {CONF_LAN_KEY: "invalid_lan_key"}
    rendered(result, "config")
    result = await _flow(hass, "127.0.0.1:1", push3_lan.key)
    assert result["errors"] == {"base": "lan_cannot_connect"}
    rendered(result, "config")
    result = await _flow(hass, "http://push3.local/readMeter?key=x", push3_lan.key)
    assert result["errors"] == {"host": "invalid_host"}
    rendered(result, "config")

    result = await _flow(hass, f"http://{push3_lan.host}", f" {push3_lan.key} ")
    assert result["step_id"] == "lan_confirm"
    rendered(result, "config")
    placeholders = result["description_placeholders"]
    assert placeholders["count"] == "2"
    assert f"- {DEMO_METER} (Omnimeter Pulse v.4)" in placeholders["meters"]
    assert f"- {DEMO_SUBPANEL_METER} (" in placeholders["meters"]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"Push3 {push3_lan.host}"
    assert result["data"] == {
        CONF_ENTRY_TYPE: ENTRY_LAN,
        CONF_HOST: push3_lan.host,
        CONF_LAN_KEY: push3_lan.key,
        CONF_METERS: sorted([DEMO_METER, DEMO_SUBPANEL_METER]),
    }
    await hass.async_block_till_done()
    state = hass.states.get(POWER)
    assert state is not None and state.state != STATE_UNAVAILABLE
    assert state.attributes["unit_of_measurement"] == "W"

    # The same gateway again (at another spelling of its address): known, address updated.
    result = await _flow(hass, push3_lan.host, push3_lan.key)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "lan_already_configured"
    rendered(result, "config")


async def test_devices_sensors_and_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    push3_lan: Push3Lan,
    loaded_lan: MockConfigEntry,
) -> None:
    registry = dr.async_get(hass)
    hub = registry.async_get_device_by_identifier(
        (DOMAIN, str(loaded_lan.unique_id)), loaded_lan.entry_id
    )
    assert hub is not None and hub.model == "Push3 gateway (local network)"
    meter = registry.async_get_device_by_identifier((DOMAIN, DEMO_METER), loaded_lan.entry_id)
    assert meter is not None and meter.via_device_id == hub.id
    assert meter.model == "Omnimeter Pulse v.4"
    # The same sensors as the other transports: totals, power factor, voltages.
    for suffix in ("total_energy", "power", "voltage_l1", "power_factor_l1"):
        state = hass.states.get(f"sensor.omnimeter_{int(DEMO_METER)}_{suffix}")
        assert state is not None and state.state not in (STATE_UNAVAILABLE, "unknown"), suffix
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded_lan)
    assert diagnostics["entry"]["data"][CONF_LAN_KEY] == "**REDACTED**"
    assert diagnostics["lan"]["host"] == push3_lan.host
    assert diagnostics["lan"]["meters_served"] == sorted([DEMO_METER, DEMO_SUBPANEL_METER])
    assert push3_lan.key not in str(diagnostics)


async def test_a_meter_that_stops_answering_goes_unavailable(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    push3_lan: Push3Lan,
    loaded_lan: MockConfigEntry,
) -> None:
    """The Push3 keeps serving the old read: its timestamp makes the meter stale."""
    assert hass.states.get(POWER).state != STATE_UNAVAILABLE  # type: ignore[union-attr]
    push3_lan.faults.lan_stale_meters = [DEMO_METER]
    for _ in range(4):  # 4 x 60 s: the meters report; the stale one does not
        freezer.tick(timedelta(seconds=60))
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
    assert hass.states.get(POWER).state == STATE_UNAVAILABLE  # type: ignore[union-attr]
    assert hass.states.get(SUBPANEL_POWER).state != STATE_UNAVAILABLE  # type: ignore[union-attr]
    push3_lan.faults.lan_stale_meters = []
    freezer.tick(timedelta(seconds=60))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert hass.states.get(POWER).state != STATE_UNAVAILABLE  # type: ignore[union-attr]


async def test_gateway_errors(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    push3_lan: Push3Lan,
    loaded_lan: MockConfigEntry,
) -> None:
    """A malformed body or a dead gateway: unavailable, then back; a wrong key: reauth."""
    coordinator = loaded_lan.runtime_data.coordinator
    push3_lan.faults.lan_malformed = "html"
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert not coordinator.last_update_success
    assert hass.states.get(POWER).state == STATE_UNAVAILABLE  # type: ignore[union-attr]
    push3_lan.faults.lan_malformed = None
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert hass.states.get(POWER).state != STATE_UNAVAILABLE  # type: ignore[union-attr]

    push3_lan.faults.lan_wrong_key = True
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress()
    assert [f["step_id"] for f in flows] == ["reauth_lan"]
    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_LAN_KEY: push3_lan.key}
    )
    assert result["errors"] == {CONF_LAN_KEY: "invalid_lan_key"}  # still refused
    push3_lan.faults.lan_wrong_key = False
    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_LAN_KEY: push3_lan.key}
    )
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert loaded_lan.state is ConfigEntryState.LOADED


async def test_options_and_reconfigure(
    hass: HomeAssistant,
    push3_lan: Push3Lan,
    loaded_lan: MockConfigEntry,
    rendered: Callable[[Any, str], None],
) -> None:
    result = await async_open_options(hass, loaded_lan.entry_id)
    assert result["step_id"] == "lan"
    rendered(result, "options")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_SCAN_INTERVAL: 5, CONF_STALE_THRESHOLD: 60, CONF_METERS: [DEMO_METER]},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_lan.options[CONF_EXCLUDED_METERS] == [DEMO_SUBPANEL_METER]
    assert loaded_lan.runtime_data.coordinator.update_interval == timedelta(seconds=5)
    assert hass.states.get(SUBPANEL_POWER) is None or (
        hass.states.get(SUBPANEL_POWER).state == STATE_UNAVAILABLE  # type: ignore[union-attr]
    )

    # Reconfigure: the other Push3 serves none of these meters; this one at its address does.
    other = next(g for g in push3_lan.sim.gateways.values() if g.host != push3_lan.host)
    result = await loaded_lan.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure_lan"
    rendered(result, "config")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: other.host, CONF_LAN_KEY: other.key}
    )
    assert result["errors"] == {"base": "lan_other_gateway"}
    rendered(result, "config")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: f"http://{push3_lan.host}/"}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert loaded_lan.data[CONF_LAN_KEY] == push3_lan.key  # left empty: kept
    assert loaded_lan.state is ConfigEntryState.LOADED
