"""Cloud control through the simulated EKM cloud: relays via the Push3, gateway commands,
triggers, and the API token in setup, options, reconfigure and repairs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
import logging
from typing import Any

from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.ekm.const import CONF_ADVANCED, CONF_API_TOKEN, CONF_SERVER, DOMAIN
from custom_components.ekm.control import token_issue_id
from custom_components.ekm.relays import unconfirmed_issue_id
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_API_TOKEN,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    Fleet,
    SimClock,
)
from tests.components.flows import async_open_options

RELAY_1 = f"switch.omnimeter_{int(DEMO_METER)}_relay_1"
RELAY_2 = f"switch.omnimeter_{int(DEMO_METER)}_relay_2"
V3_ON_DEMO_GATEWAY = "000000010388"
OFF_GATEWAY = "000300000001"  # a v4 meter on no Push3 gateway


FRESH_TOKEN = "ekmsim-api-token-fresh-0001"
SECOND_TOKEN = "ekmsim-api-token-second-0002"


@pytest.fixture(autouse=True)
def made_up_tokens_are_secrets(guard_secrets: Callable[..., None]) -> None:
    """The tokens this file makes up must not reach a log either."""
    guard_secrets(FRESH_TOKEN, SECOND_TOKEN, "still-wrong", "not-a-token")


@pytest.fixture
def fleet() -> Fleet:
    """The demo fleet on a manual clock: reads happen when a test (or a command) makes them."""
    world = Fleet.demo(clock=SimClock(manual=True))
    world.backfill(5)
    return world


def _entry(cloud: CloudSimulator, *, token: str | None = None) -> MockConfigEntry:
    data: dict[str, Any] = {CONF_API_KEY: DEMO_ACCOUNT_KEY, CONF_SERVER: cloud.url}
    if token is not None:
        data[CONF_API_TOKEN] = token
    return MockConfigEntry(
        domain=DOMAIN, title="EKM Push account 1010", unique_id="1010", data=data
    )


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


@pytest.fixture
async def account(hass: HomeAssistant, cloud: CloudSimulator) -> MockConfigEntry:
    """The demo account without an API token, set up."""
    return await _setup(hass, _entry(cloud))


@pytest.fixture
async def tokened(hass: HomeAssistant, cloud: CloudSimulator) -> MockConfigEntry:
    """The demo account with the demo API token, set up."""
    return await _setup(hass, _entry(cloud, token=DEMO_API_TOKEN))


async def _later(hass: HomeAssistant, seconds: float) -> None:
    """Let ``seconds`` pass for Home Assistant's timers, and what they start finish."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))
    await hass.async_block_till_done(wait_background_tasks=True)


def _pending(hass: HomeAssistant, entity_id: str) -> bool:
    return bool(hass.states.get(entity_id).attributes["pending"])


def _gateway_device(hass: HomeAssistant, entry: MockConfigEntry, mac: str) -> str:
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, mac), entry.entry_id)
    assert device is not None
    return device.id


async def _switch(hass: HomeAssistant, service: str, entity_id: str) -> None:
    await hass.services.async_call("switch", service, {"entity_id": entity_id}, blocking=True)


# --- relays -------------------------------------------------------------------------------


async def test_relay_switches_only_where_the_cloud_can_switch(
    hass: HomeAssistant, account: MockConfigEntry
) -> None:
    """v4/v5 meters behind a Push3 get relays; a v3 meter and a meter on no gateway don't."""
    assert hass.states.get(RELAY_1).state == "off"
    assert hass.states.get(RELAY_1).attributes["pending"] is False
    assert hass.states.get("switch.omnimeter_15635_relay_1").state == "on"  # v5
    assert hass.states.get(f"switch.omnimeter_{int(V3_ON_DEMO_GATEWAY)}_relay_1") is None
    assert hass.states.get(f"switch.omnimeter_{int(OFF_GATEWAY)}_relay_1") is None


async def test_relay_on_pending_then_confirmed_by_realtime(
    hass: HomeAssistant, account: MockConfigEntry, cloud: CloudSimulator, fleet: Fleet
) -> None:
    """Switched on: on and pending at once; the gateway applies it; a Realtime read confirms."""
    await _switch(hass, "turn_on", RELAY_1)
    assert hass.states.get(RELAY_1).state == "on"
    assert _pending(hass, RELAY_1)
    await hass.async_block_till_done()
    assert fleet.meters[DEMO_METER].relays[0] is True  # the gateway applied it
    command = cloud.control.commands[-1]
    assert command.body["command"] == "SetRelay"
    assert command.body["client"] == "home-assistant-ekm"
    assert command.body["params"] == {"relay": "relay_1", "status": "close", "duration": 0}

    await _later(hass, 11)  # the first confirmation poll
    assert hass.states.get(RELAY_1).state == "on"
    assert not _pending(hass, RELAY_1)
    diagnostics = account.runtime_data.relays.diagnostics()  # type: ignore[union-attr]
    assert diagnostics["confirmed"] == 1
    assert diagnostics["pending"] == {}

    await _switch(hass, "turn_off", RELAY_1)
    assert hass.states.get(RELAY_1).state == "off"
    await hass.async_block_till_done()
    await _later(hass, 11)
    assert hass.states.get(RELAY_1).state == "off"
    assert not _pending(hass, RELAY_1)
    assert fleet.meters[DEMO_METER].relays[0] is False
    assert hass.states.get(RELAY_2).state == "off"


async def test_timed_relay_through_set_relay_action(
    hass: HomeAssistant, account: MockConfigEntry, fleet: Fleet, cloud: CloudSimulator
) -> None:
    """ekm.set_relay on a cloud switch: on for 30 s, confirmed; the meter switches back."""
    await hass.services.async_call(
        DOMAIN,
        "set_relay",
        {"entity_id": RELAY_2, "state": "on", "duration": 30},
        blocking=True,
    )
    await hass.async_block_till_done()
    command = cloud.control.commands[-1]
    assert command.body["params"] == {"relay": "relay_2", "status": "close", "duration": 30}
    await _later(hass, 11)
    assert hass.states.get(RELAY_2).state == "on"
    assert not _pending(hass, RELAY_2)

    fleet.advance(120)  # well past the 30 s: the meter opened the relay by itself
    await account.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()
    assert hass.states.get(RELAY_2).state == "off"


async def test_unconfirmed_relay_returns_and_says_so_once(
    hass: HomeAssistant,
    account: MockConfigEntry,
    cloud: CloudSimulator,
    fleet: Fleet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No reading confirms within 3 minutes: back to the read state, one warning, a repair."""
    cloud.faults.drop_commands = True
    await _switch(hass, "turn_on", RELAY_1)
    assert hass.states.get(RELAY_1).state == "on"
    await _later(hass, 60)
    assert _pending(hass, RELAY_1)  # still waiting
    with caplog.at_level(logging.WARNING):
        await _later(hass, 181)
    assert hass.states.get(RELAY_1).state == "off"
    assert not _pending(hass, RELAY_1)
    warnings = [r for r in caplog.records if "no reading confirmed" in r.getMessage()]
    assert len(warnings) == 1
    issue_id = unconfirmed_issue_id(account.entry_id, DEMO_METER, 1)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders["state"] == "on"
    await _later(hass, 600)
    assert len([r for r in caplog.records if "no reading confirmed" in r.getMessage()]) == 1

    # The next switch that is confirmed clears the issue.
    cloud.faults.drop_commands = False
    await _switch(hass, "turn_on", RELAY_1)
    await hass.async_block_till_done()
    await _later(hass, 11)
    assert hass.states.get(RELAY_1).state == "on"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_meter_reporting_every_ten_minutes_gets_longer(hass: HomeAssistant) -> None:
    """A meter that reports every 10 minutes is given two of its intervals to confirm."""
    fleet = Fleet.demo(clock=SimClock(manual=True), interval_s=600)
    fleet.backfill(3)
    async with CloudSimulator(fleet) as sim:
        sim.faults.command_delay_s = 0
        entry = await _setup(hass, _entry(sim))
        fleet.advance(600)
        await entry.runtime_data.coordinator.async_refresh()
        fleet.set_gateway_online(DEMO_GATEWAY_MAC, False)  # it takes the command later
        await _switch(hass, "turn_on", RELAY_1)
        await _later(hass, 200)
        assert _pending(hass, RELAY_1)  # three minutes are not enough for this meter
        fleet.set_gateway_online(DEMO_GATEWAY_MAC, True)
        await _later(hass, 620)  # its next report's poll
        assert hass.states.get(RELAY_1).state == "on"
        assert not _pending(hass, RELAY_1)
        issue_id = unconfirmed_issue_id(entry.entry_id, DEMO_METER, 1)
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_offline_gateway_applies_when_back(
    hass: HomeAssistant, account: MockConfigEntry, fleet: Fleet
) -> None:
    """EKM takes the command while the Push3 is away; it is confirmed once it is back."""
    fleet.set_gateway_online(DEMO_GATEWAY_MAC, False)
    await _switch(hass, "turn_on", RELAY_1)
    await _later(hass, 11)
    assert _pending(hass, RELAY_1)
    assert fleet.meters[DEMO_METER].relays[0] is False
    fleet.set_gateway_online(DEMO_GATEWAY_MAC, True)
    await _later(hass, 21)
    assert fleet.meters[DEMO_METER].relays[0] is True
    assert hass.states.get(RELAY_1).state == "on"
    assert not _pending(hass, RELAY_1)


@pytest.mark.parametrize(
    ("status", "error", "key"),
    [
        (429, HomeAssistantError, "rate_limited"),
        (403, HomeAssistantError, "command_forbidden"),
        (500, HomeAssistantError, "communication_error"),
    ],
)
async def test_relay_command_errors(
    hass: HomeAssistant,
    account: MockConfigEntry,
    cloud: CloudSimulator,
    fleet: Fleet,
    status: int,
    error: type[Exception],
    key: str,
) -> None:
    """A refused command raises a translated error and leaves the switch as it was."""
    cloud.faults.fail_next = [status]
    cloud.faults.only_endpoints = ["sendCommand"]
    with pytest.raises(error) as raised:
        await _switch(hass, "turn_on", RELAY_1)
    assert getattr(raised.value, "translation_key", None) == key
    assert hass.states.get(RELAY_1).state == "off"
    assert not _pending(hass, RELAY_1)
    assert not cloud.control.commands


async def test_server_that_requires_a_token_for_commands(
    hass: HomeAssistant, cloud: CloudSimulator, fleet: Fleet
) -> None:
    """Without a token a token-requiring server refuses clearly; with one, the relay works."""
    cloud.faults.command_token_required = True
    entry = await _setup(hass, _entry(cloud))
    with pytest.raises(ServiceValidationError) as raised:
        await _switch(hass, "turn_on", RELAY_1)
    assert raised.value.translation_key == "token_required"
    await hass.config_entries.async_unload(entry.entry_id)
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, CONF_API_TOKEN: DEMO_API_TOKEN}
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await _switch(hass, "turn_on", RELAY_1)
    await hass.async_block_till_done()
    assert fleet.meters[DEMO_METER].relays[0] is True
    command = cloud.control.commands[-1]
    assert command.body["target_id"] == DEMO_METER


async def test_cloud_relay_of_a_meter_on_no_gateway_is_refused(
    hass: HomeAssistant, account: MockConfigEntry
) -> None:
    """EKM switches relays through a Push3 only: a meter on none cannot be switched."""
    relays = account.runtime_data.relays
    assert relays is not None
    with pytest.raises(ServiceValidationError) as raised:
        await relays.async_set(OFF_GATEWAY, 1, True)
    assert raised.value.translation_key == "no_gateway"


# --- gateway commands ---------------------------------------------------------------------


async def test_send_gateway_command(
    hass: HomeAssistant, account: MockConfigEntry, fleet: Fleet, cloud: CloudSimulator
) -> None:
    """Any command, EKM's answer as response data; a v3 meter ignores SetRelay."""
    gateway = _gateway_device(hass, account, DEMO_GATEWAY_MAC)
    response = await hass.services.async_call(
        DOMAIN,
        "send_gateway_command",
        {
            "gateway": gateway,
            "command": "SetRelay",
            "target": "meter",
            "target_id": V3_ON_DEMO_GATEWAY,
            "params": {"relay": "relay_1", "status": "close", "duration": 0},
        },
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert len(str(response["msg_id"])) == 32
    assert "response_channel_id" in response
    assert "response_channel_host" in response
    await hass.async_block_till_done()
    assert cloud.control.commands[-1].body["target_id"] == V3_ON_DEMO_GATEWAY
    assert cloud.control.commands[-1].outcome == "ignored"  # v3: no relays to switch

    # An unknown command: EKM's 400 text comes back as a validation error.
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN,
            "send_gateway_command",
            {"gateway": gateway, "command": "Nonsense", "target_id": DEMO_METER},
            blocking=True,
            return_response=True,
        )
    assert raised.value.translation_key == "invalid_parameters"
    assert "Nonsense" in str(raised.value.translation_placeholders)

    # A meter target whose id is not a meter address never leaves Home Assistant.
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN,
            "send_gateway_command",
            {"gateway": gateway, "command": "SetRelay", "target_id": "kitchen"},
            blocking=True,
            return_response=True,
        )
    assert raised.value.translation_key == "invalid_parameters"


async def test_gateway_actions_need_a_gateway(
    hass: HomeAssistant, account: MockConfigEntry
) -> None:
    """A meter device (or an unknown id) is not a gateway: a clear validation error."""
    meter = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, DEMO_METER), account.entry_id
    )
    assert meter is not None
    for device_id in (meter.id, "not-a-device"):
        with pytest.raises(ServiceValidationError) as raised:
            await hass.services.async_call(
                DOMAIN, "list_triggers", {"gateway": device_id}, blocking=True, return_response=True
            )
        assert raised.value.translation_key == "not_a_gateway"


# --- triggers -----------------------------------------------------------------------------


async def _trigger_action(
    hass: HomeAssistant, service: str, data: dict[str, Any]
) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


async def test_trigger_actions(hass: HomeAssistant, tokened: MockConfigEntry, fleet: Fleet) -> None:
    """List, get, create, update and delete, EKM's trigger JSON passed through unchanged."""
    gateway = _gateway_device(hass, tokened, DEMO_GATEWAY_MAC)
    listed = await _trigger_action(hass, "list_triggers", {"gateway": gateway})
    assert [t["trigger_name"] for t in listed["triggers"]] == ["Shed water heater at peak"]
    demo = listed["triggers"][0]
    got = await _trigger_action(
        hass, "get_trigger", {"gateway": gateway, "trigger_id": demo["trigger_uuid"]}
    )
    assert got["trigger"] == demo

    new = {
        "trigger_name": "Peak shedding",
        "condition": {
            "meter": DEMO_METER,
            "field": "RMS_Watts_Tot",
            "operator": ">",
            "value": 7000,
        },
        "action": {"type": "relay", "meter": DEMO_METER, "relay": "relay_1", "status": "open"},
        "vendor_field": [1, 2, 3],
    }
    created = (await _trigger_action(hass, "create_trigger", {"gateway": gateway, "trigger": new}))[
        "trigger"
    ]
    uuid = created["trigger_uuid"]
    assert created["vendor_field"] == [1, 2, 3]
    assert uuid in fleet.triggers[DEMO_GATEWAY_MAC]

    dashed = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}".upper()
    updated = await _trigger_action(
        hass,
        "update_trigger",
        {"gateway": gateway, "trigger_id": dashed, "trigger": {**new, "trigger_name": "Peak 2"}},
    )
    assert updated["trigger"]["trigger_name"] == "Peak 2"

    deleted = await _trigger_action(
        hass, "delete_trigger", {"gateway": gateway, "trigger_id": uuid}
    )
    assert deleted["trigger_id"] == uuid
    assert uuid not in fleet.triggers[DEMO_GATEWAY_MAC]
    with pytest.raises(ServiceValidationError) as raised:
        await _trigger_action(hass, "get_trigger", {"gateway": gateway, "trigger_id": uuid})
    assert raised.value.translation_key == "trigger_not_found"

    with pytest.raises(ServiceValidationError) as raised:
        await _trigger_action(
            hass, "create_trigger", {"gateway": gateway, "trigger": {"no": "name"}}
        )
    assert raised.value.translation_key == "invalid_parameters"


async def test_trigger_id_is_validated(hass: HomeAssistant, tokened: MockConfigEntry) -> None:
    gateway = _gateway_device(hass, tokened, DEMO_GATEWAY_MAC)
    with pytest.raises(Exception, match="32 hexadecimal"):
        await _trigger_action(hass, "get_trigger", {"gateway": gateway, "trigger_id": "xyz"})


async def test_trigger_actions_without_a_token(
    hass: HomeAssistant, account: MockConfigEntry, cloud: CloudSimulator
) -> None:
    """No token: the action says one is needed and where EKM issues it; nothing is sent."""
    gateway = _gateway_device(hass, account, DEMO_GATEWAY_MAC)
    cloud.reset_counts()
    with pytest.raises(ServiceValidationError) as raised:
        await _trigger_action(hass, "list_triggers", {"gateway": gateway})
    assert raised.value.translation_key == "token_required"
    assert cloud.requests["trigger"] == 0


async def test_rejected_token_raises_repair_and_fix_flow_takes_a_new_one(
    hass: HomeAssistant,
    tokened: MockConfigEntry,
    fleet: Fleet,
    rendered: Callable[[Any, str], None],
) -> None:
    """A revoked token: a translated error and a repair issue whose flow stores a new token."""
    gateway = _gateway_device(hass, tokened, DEMO_GATEWAY_MAC)
    fleet.revoke(DEMO_API_TOKEN)
    with pytest.raises(HomeAssistantError) as raised:
        await _trigger_action(hass, "list_triggers", {"gateway": gateway})
    assert raised.value.translation_key == "token_rejected"
    issue_id = token_issue_id(tokened.entry_id)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None

    assert await async_setup_component(hass, "repairs", {})
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert result["step_id"] == "token"
    rendered(result, "issues.api_token_rejected")
    result = await manager.async_configure(result["flow_id"], {CONF_API_TOKEN: "still-wrong"})
    assert result["errors"] == {"base": "invalid_token"}
    rendered(result, "issues.api_token_rejected")
    fresh = FRESH_TOKEN
    fleet.add_token(fresh)
    result = await manager.async_configure(result["flow_id"], {CONF_API_TOKEN: f" {fresh} "})
    assert result["type"] == "create_entry"
    await hass.async_block_till_done()
    assert tokened.data[CONF_API_TOKEN] == fresh
    assert tokened.state is ConfigEntryState.LOADED
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    listed = await _trigger_action(
        hass, "list_triggers", {"gateway": _gateway_device(hass, tokened, DEMO_GATEWAY_MAC)}
    )
    assert len(listed["triggers"]) == 1


async def test_repair_flow_can_drop_the_token(
    hass: HomeAssistant, tokened: MockConfigEntry
) -> None:
    from custom_components.ekm.control import async_raise_token_rejected

    async_raise_token_rejected(hass, tokened)
    assert await async_setup_component(hass, "repairs", {})
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_init(DOMAIN, data={"issue_id": token_issue_id(tokened.entry_id)})
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] == "create_entry"
    await hass.async_block_till_done()
    assert CONF_API_TOKEN not in tokened.data


# --- the token in setup, options, reconfigure, reauth; diagnostics ---------------------------


async def _cloud_step(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "cloud"}
    )
    return str(result["flow_id"])


async def test_setup_with_a_token(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    flow_id = await _cloud_step(hass)
    advanced = {CONF_SERVER: cloud.url, CONF_API_TOKEN: "not-a-token"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_API_KEY: DEMO_ACCOUNT_KEY, CONF_ADVANCED: advanced}
    )
    assert result["errors"] == {CONF_ADVANCED: "invalid_token"}
    advanced[CONF_API_TOKEN] = f" {DEMO_API_TOKEN} "
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_API_KEY: DEMO_ACCOUNT_KEY, CONF_ADVANCED: advanced}
    )
    assert result["step_id"] == "gateway_keys"
    result = await hass.config_entries.flow.async_configure(flow_id, {"push": {}})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_API_TOKEN] == DEMO_API_TOKEN
    await hass.async_block_till_done()


async def test_options_set_and_forget_token(hass: HomeAssistant, account: MockConfigEntry) -> None:
    async def _options(extra: dict[str, Any]) -> Any:
        result = await async_open_options(hass, account.entry_id)
        return await hass.config_entries.options.async_configure(
            result["flow_id"],
            {"scan_interval": 60, "stale_threshold": 600, "push": {}, **extra},
        )

    result = await _options({CONF_API_TOKEN: "wrong"})
    assert result["errors"] == {CONF_API_TOKEN: "invalid_token"}
    result = await _options({CONF_API_TOKEN: DEMO_API_TOKEN})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert account.data[CONF_API_TOKEN] == DEMO_API_TOKEN
    assert account.runtime_data.control.has_token  # type: ignore[union-attr]
    # Shown again, the token itself is never in the form; "forget" removes it.
    result = await async_open_options(hass, account.entry_id)
    assert DEMO_API_TOKEN not in repr(result["data_schema"].schema)
    assert "forget_api_token" in {str(k) for k in result["data_schema"].schema}
    result = await _options({})  # left empty: kept
    await hass.async_block_till_done()
    assert account.data[CONF_API_TOKEN] == DEMO_API_TOKEN
    result = await _options({"forget_api_token": True})
    await hass.async_block_till_done()
    assert CONF_API_TOKEN not in account.data


async def test_reconfigure_and_reauth_keep_or_replace_the_token(
    hass: HomeAssistant, tokened: MockConfigEntry, fleet: Fleet, cloud: CloudSimulator
) -> None:
    result = await tokened.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_ADVANCED: {CONF_SERVER: cloud.url}}
    )
    assert result["reason"] == "reconfigure_successful"
    assert tokened.data[CONF_API_TOKEN] == DEMO_API_TOKEN
    await hass.async_block_till_done()

    result = await tokened.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_ADVANCED: {CONF_SERVER: cloud.url, CONF_API_TOKEN: "bad"}}
    )
    assert result["errors"] == {CONF_ADVANCED: "invalid_token"}
    other = SECOND_TOKEN
    fleet.add_token(other)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_ADVANCED: {CONF_SERVER: cloud.url, CONF_API_TOKEN: other}}
    )
    assert result["reason"] == "reconfigure_successful"
    assert tokened.data[CONF_API_TOKEN] == other
    await hass.async_block_till_done()

    # A new key through reauth leaves the token alone.
    new_key = "MTAxMDpuZXdzZWNyZXQ"  # 1010:newsecret
    fleet.account_key = new_key
    for token in list(fleet.api_tokens):
        fleet.add_token(token, account_key=new_key)
    result = await tokened.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: new_key}
    )
    assert result["reason"] == "reauth_successful"
    assert tokened.data[CONF_API_TOKEN] == other
    await hass.async_block_till_done()


async def test_diagnostics_never_show_the_token(
    hass: HomeAssistant, tokened: MockConfigEntry, hass_client: ClientSessionGenerator
) -> None:
    await _switch(hass, "turn_on", RELAY_1)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, tokened)
    assert DEMO_API_TOKEN not in repr(diagnostics)
    assert diagnostics["entry"]["data"][CONF_API_TOKEN] == "**REDACTED**"
    control = diagnostics["control"]
    assert control["api_token"] is True
    assert f"{DEMO_METER} relay 1" in control["relays"]["pending"]
