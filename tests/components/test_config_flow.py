"""Config flow: every path a user can take, against the simulated EKM cloud."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState, ConfigFlowResult
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ekm.config_flow import account_unique_id
from custom_components.ekm.const import (
    CONF_ADVANCED,
    CONF_EXCLUDED_METERS,
    CONF_HISTORY,
    CONF_METERS,
    CONF_SCAN_INTERVAL,
    CONF_SERVER,
    CONF_STALE_THRESHOLD,
    DOMAIN,
)
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    DEMO_METER_KEY,
    Fleet,
)
from tests.components.flows import async_open_options


async def _start(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["cloud", "lan", "rs485"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "cloud"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "cloud"
    return result["flow_id"]


def _user_input(key: str, server: str) -> dict[str, object]:
    return {CONF_API_KEY: key, CONF_ADVANCED: {CONF_SERVER: server}}


async def _finish_without_gateway_keys(hass: HomeAssistant, flow_id: str) -> ConfigFlowResult:
    return await hass.config_entries.flow.async_configure(flow_id, {"push": {}})


async def test_user_flow_creates_entry(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(f" {DEMO_ACCOUNT_KEY} ", cloud.url + "/")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "gateway_keys"
    result = await _finish_without_gateway_keys(hass, flow_id)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"] == {}
    assert result["title"] == "EKM Push account 1010"
    assert result["data"] == {
        CONF_API_KEY: DEMO_ACCOUNT_KEY,
        CONF_SERVER: cloud.url,
        "key_type": "account",
    }
    assert result["result"].unique_id == "1010"
    await hass.async_block_till_done()
    assert result["result"].state is ConfigEntryState.LOADED


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("bad_key", "invalid_auth"),
        ("rate_limit", "rate_limited"),
        ("server_error", "invalid_response"),
        ("malformed", "invalid_response"),
        ("no_devices", "no_devices"),
    ],
)
async def test_user_flow_errors_then_recovers(
    hass: HomeAssistant, cloud: CloudSimulator, fleet: Fleet, fault: str, error: str
) -> None:
    flow_id = await _start(hass)
    key = DEMO_ACCOUNT_KEY
    meters = dict(fleet.meters)
    gateway_meters = {mac: list(gw.meters) for mac, gw in fleet.gateways.items()}
    if fault == "bad_key":
        key = "MTAxMDpub3BlIQ"  # 1010:nope!
    elif fault == "rate_limit":
        cloud.faults.error_rates = {429: 1.0}
    elif fault == "server_error":
        cloud.faults.error_rates = {500: 1.0}
    elif fault == "malformed":
        cloud.faults.malformed = "not_json"
    elif fault == "no_devices":
        fleet.meters.clear()
        for gateway in fleet.gateways.values():
            gateway.meters.clear()
    result = await hass.config_entries.flow.async_configure(flow_id, _user_input(key, cloud.url))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}

    cloud.faults.reset()
    fleet.meters.update(meters)
    for mac, addresses in gateway_meters.items():
        fleet.gateways[mac].meters[:] = addresses
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_ACCOUNT_KEY, cloud.url)
    )
    assert result["step_id"] == "gateway_keys"
    result = await _finish_without_gateway_keys(hass, flow_id)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_flow_cannot_connect(hass: HomeAssistant, unused_tcp_port: int) -> None:
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_ACCOUNT_KEY, f"http://127.0.0.1:{unused_tcp_port}")
    )
    assert result["errors"] == {"base": "cannot_connect"}


@pytest.mark.parametrize("server", ["ftp://example.com", "not a url", "http://", "http://[broken"])
async def test_user_flow_invalid_server(hass: HomeAssistant, server: str) -> None:
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_ACCOUNT_KEY, server)
    )
    assert result["errors"] == {CONF_ADVANCED: "invalid_server"}


async def test_user_flow_already_configured(
    hass: HomeAssistant, cloud: CloudSimulator, entry: MockConfigEntry
) -> None:
    entry.add_to_hass(hass)
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_ACCOUNT_KEY, cloud.url)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reauth(
    hass: HomeAssistant, cloud: CloudSimulator, loaded_entry: MockConfigEntry, fleet: Fleet
) -> None:
    new_key = "MTAxMDpuZXdzZWNyZXQ"  # 1010:newsecret
    result = await loaded_entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"

    # A key the server does not know yet.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: new_key}
    )
    assert result["errors"] == {"base": "invalid_auth"}

    # A key of another account.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_API_KEY: "OTk5OTpvdGhlcg"},  # 9999:other
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"

    result = await loaded_entry.start_reauth_flow(hass)
    fleet.account_key = new_key
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: new_key}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert loaded_entry.data[CONF_API_KEY] == new_key
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.LOADED


async def test_reconfigure(
    hass: HomeAssistant, cloud: CloudSimulator, loaded_entry: MockConfigEntry
) -> None:
    result = await loaded_entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    assert DEMO_ACCOUNT_KEY not in repr(result["data_schema"].schema)

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(DEMO_ACCOUNT_KEY, "gopher://x")
    )
    assert result["errors"] == {CONF_ADVANCED: "invalid_server"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input("MTAxMDpub3BlIQ", cloud.url)
    )
    assert result["errors"] == {"base": "invalid_auth"}

    # The key is not sent back to the form; left empty, the current key is kept.
    assert DEMO_ACCOUNT_KEY not in repr(result.get("data_schema"))
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"advanced": {CONF_SERVER: cloud.url + "/"}}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert loaded_entry.data[CONF_API_KEY] == DEMO_ACCOUNT_KEY
    await hass.async_block_till_done()  # the entry reloads with the new server address
    assert loaded_entry.state is ConfigEntryState.LOADED

    result = await loaded_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input("OTk5OTpvdGhlcg", cloud.url)
    )
    assert result["reason"] == "wrong_account"


async def test_options(hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: Fleet) -> None:
    result = await async_open_options(hass, loaded_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    schema_keys = {str(k) for k in result["data_schema"].schema}
    assert {CONF_SCAN_INTERVAL, CONF_STALE_THRESHOLD, CONF_METERS} <= schema_keys

    keep = sorted(fleet.meters)[:-1]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_SCAN_INTERVAL: 120, CONF_STALE_THRESHOLD: 900, CONF_METERS: keep, "push": {}},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options == {
        CONF_SCAN_INTERVAL: 120,
        CONF_STALE_THRESHOLD: 900,
        CONF_HISTORY: True,
        CONF_EXCLUDED_METERS: sorted(fleet.meters)[-1:],
    }
    await hass.async_block_till_done()
    coordinator = loaded_entry.runtime_data.coordinator
    assert coordinator.update_interval is not None
    assert coordinator.update_interval.total_seconds() == 120
    assert set(coordinator.data.devices) == set(keep)


def test_account_unique_id() -> None:
    assert account_unique_id(DEMO_ACCOUNT_KEY) == "1010"
    assert account_unique_id("MTAxMDoyMDIw==") == "1010"
    # Not base64 of "id:secret": a stable hash instead.
    assert account_unique_id("not-base64!") == account_unique_id("not-base64!")
    assert len(account_unique_id(DEMO_GATEWAY_KEY)) == 8  # "65269436"


# --- first impressions: every form renders; a wrong try blocks nothing; every key kind -------


async def test_every_cloud_form_renders(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    loaded_entry: MockConfigEntry,
    rendered: Callable[[Any, str], None],
) -> None:
    """Each form, error and abort of the cloud entry has every placeholder its text uses."""
    config, options = "config", "options"
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    rendered(result, config)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "cloud"}
    )
    rendered(result, config)
    flow_id = result["flow_id"]
    for key, server in (
        ("MTAxMTp3cm9uZw", "gopher://x"),  # 1011:wrong, a bad server
        ("MTAxMTp3cm9uZw", cloud.url),  # a key EKM rejects
    ):
        result = await hass.config_entries.flow.async_configure(flow_id, _user_input(key, server))
        assert result["errors"]
        rendered(result, config)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_ACCOUNT_KEY, cloud.url)
    )
    assert result["reason"] == "already_configured"
    rendered(result, config)

    # A gateway key: its own push step, named after the gateway.
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_GATEWAY_KEY, cloud.url)
    )
    assert result["step_id"] == "gateway_push"
    assert result["description_placeholders"] == {"gateway": "Demo Push3"}
    rendered(result, config)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {"use_push": True, "push": {"mqtt_server": "http://nope"}}
    )
    rendered(result, config)
    hass.config_entries.flow.async_abort(flow_id)

    # Reauth, reconfigure and the options (with an error shown).
    result = await loaded_entry.start_reauth_flow(hass)
    rendered(result, config)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: "MTAxMDpub3BlIQ"}
    )
    rendered(result, config)
    hass.config_entries.flow.async_abort(result["flow_id"])
    result = await loaded_entry.start_reconfigure_flow(hass)
    rendered(result, config)
    hass.config_entries.flow.async_abort(result["flow_id"])
    result = await async_open_options(hass, loaded_entry.entry_id)
    assert result["step_id"] == "account"
    rendered(result, options)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_SCAN_INTERVAL: 60, CONF_STALE_THRESHOLD: 600, "api_token": "no", "push": {}},
    )
    assert result["errors"] == {"api_token": "invalid_token"}
    rendered(result, options)
    hass.config_entries.options.async_abort(result["flow_id"])


async def test_wrong_try_does_not_block_the_right_key(
    hass: HomeAssistant, cloud: CloudSimulator
) -> None:
    """A flow left open after a wrong secret: a new flow with the right key goes on."""
    abandoned = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        abandoned,
        _user_input("MTAxMDp3cm9uZw", cloud.url),  # 1010:wrong
    )
    assert result["errors"] == {"base": "invalid_auth"}
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_ACCOUNT_KEY, cloud.url)
    )
    assert result["step_id"] == "gateway_keys"
    result = await _finish_without_gateway_keys(hass, flow_id)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()


async def test_gateway_key_polling_only(
    hass: HomeAssistant, cloud: CloudSimulator, fleet: Fleet
) -> None:
    """A gateway key adds that gateway and its meters, titled by the gateway's name."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_GATEWAY_KEY, cloud.url)
    )
    result = await hass.config_entries.flow.async_configure(
        flow_id, {"use_push": False, "push": {}}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "EKM Push gateway Demo Push3"
    assert result["data"]["key_type"] == "gateway"
    assert result["options"] == {}
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    gateway = fleet.gateways[DEMO_GATEWAY_MAC]
    assert set(entry.runtime_data.coordinator.data.devices) == set(gateway.meters)


async def test_meter_key_adds_one_meter(
    hass: HomeAssistant, cloud: CloudSimulator, fleet: Fleet
) -> None:
    """A tenant's meter key: that one meter, no push step, no relay switches."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, _user_input(DEMO_METER_KEY, cloud.url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"EKM Push meter {DEMO_METER}"
    assert result["data"]["key_type"] == "meter"
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    assert set(entry.runtime_data.coordinator.data.devices) == {DEMO_METER}
    assert hass.states.get(f"sensor.omnimeter_{int(DEMO_METER)}_power") is not None
    assert hass.states.get(f"switch.omnimeter_{int(DEMO_METER)}_relay_1") is None
