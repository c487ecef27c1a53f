"""Push updates through a real TLS MQTT broker (the simulator's), with gap filling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import gc
import logging
from pathlib import Path
import ssl
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_API_KEY, EVENT_HOMEASSISTANT_STOP, STATE_UNAVAILABLE
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ekm import push as push_module
from custom_components.ekm.const import (
    CONF_GATEWAY_KEYS,
    CONF_MQTT_CA_FILE,
    CONF_MQTT_SERVER,
    CONF_NEW_GATEWAY_KEYS,
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
    Fleet,
    SimClock,
)
from ekmsim.mqtt import MqttSimulator
from tests.components.flows import async_open_options

PUSH_SENSOR = "binary_sensor.demo_push3_push_connected"  # the demo gateway is "Demo Push3"
LAST_READ = f"binary_sensor.omnimeter_{int(DEMO_METER)}_reporting"  # written with every reading
V3_ON_DEMO_GATEWAY = "000000010388"
OFF_GATEWAY = "000300000001"


@pytest.fixture
def fleet() -> Fleet:
    """The demo fleet on a manual clock: reads happen only when a test advances it."""
    world = Fleet.demo(clock=SimClock(manual=True))
    world.backfill(5)
    return world


@pytest.fixture(autouse=True)
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect after 50 ms instead of 1 s, so 20 broker restarts take seconds."""
    monkeypatch.setattr(push_module, "BACKOFF_INITIAL_S", 0.05)


@pytest.fixture
async def broker(fleet: Fleet, tmp_path: Path) -> AsyncIterator[MqttSimulator]:
    """EKM's MQTT broker, simulated over TLS with its own test CA."""
    sim = MqttSimulator(fleet, value_style="mixed")
    await sim.start(host="127.0.0.1", port=0, cert_dir=tmp_path)
    try:
        yield sim
    finally:
        await sim.stop()


def push_options(broker: MqttSimulator, **extra: Any) -> dict[str, Any]:
    return {
        CONF_GATEWAY_KEYS: {DEMO_GATEWAY_KEY: DEMO_GATEWAY_MAC},
        CONF_MQTT_SERVER: broker.url,
        CONF_MQTT_CA_FILE: str(broker.ca_file),
        **extra,
    }


def account_entry(cloud: CloudSimulator, broker: MqttSimulator) -> MockConfigEntry:
    """The demo account with the demo gateway's key, on the simulators."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="EKM Push account 1010",
        unique_id="1010",
        data={CONF_API_KEY: DEMO_ACCOUNT_KEY, CONF_SERVER: cloud.url},
        options=push_options(broker),
    )


@pytest.fixture
async def push_entry(
    hass: HomeAssistant, cloud: CloudSimulator, broker: MqttSimulator
) -> MockConfigEntry:
    """The demo account with the demo gateway's key, set up and connected."""
    entry = account_entry(cloud, broker)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await until(hass, lambda: _state(hass, PUSH_SENSOR) == "on")
    return entry


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return state.state if state else None


async def until(hass: HomeAssistant, condition: Callable[[], bool], limit: float = 20) -> None:
    """Wait (without asserting on time) until the condition holds."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.01)
            await hass.async_block_till_done()


def _read_time(fleet: Fleet, address: str) -> str:
    return str(fleet.history(address)[-1]["Time_Stamp_UTC_ms"])


def _last_read_ms(hass: HomeAssistant) -> int:
    coordinator = hass.config_entries.async_entries(DOMAIN)[0].runtime_data.coordinator
    return coordinator.data.readings[DEMO_METER].timestamp_ms


async def test_message_reaches_entity_state(
    hass: HomeAssistant, push_entry: MockConfigEntry, fleet: Fleet, cloud: CloudSimulator
) -> None:
    cloud.requests.clear()
    fleet.advance(60)
    newest = int(_read_time(fleet, DEMO_METER))
    await until(hass, lambda: _last_read_ms(hass) == newest)
    expected = float(fleet.history(DEMO_METER)[-1]["kWh_Tot"])
    state = hass.states.get(f"sensor.omnimeter_{int(DEMO_METER)}_total_energy")
    assert state is not None and float(state.state) == pytest.approx(expected)
    # Pushed, not polled: the Realtime API was not asked.
    assert cloud.requests["readMeter"] == 0


async def test_poll_skips_pushed_meters(
    hass: HomeAssistant, push_entry: MockConfigEntry, cloud: CloudSimulator
) -> None:
    """While the stream is up only meters of other gateways are polled."""
    coordinator = push_entry.runtime_data.coordinator
    assert {DEMO_METER, V3_ON_DEMO_GATEWAY} <= coordinator.push_covered
    cloud.request_log.clear()
    await coordinator.async_refresh()
    polled = {
        meter
        for endpoint, query in cloud.request_log
        if endpoint == "readMeter"
        for meter in query.get("meters", "").split("~")
    }
    assert OFF_GATEWAY in polled
    assert DEMO_METER not in polled and V3_ON_DEMO_GATEWAY not in polled


async def test_twenty_broker_restarts_lose_nothing(
    hass: HomeAssistant, push_entry: MockConfigEntry, fleet: Fleet, broker: MqttSimulator
) -> None:
    """Every reading made while the broker was down is recovered, once, in order."""
    seen: list[int] = []

    @callback
    def record(event: Event[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        if new is not None and new.state not in (STATE_UNAVAILABLE, "unknown"):
            seen.append(_last_read_ms(hass))

    hass.bus.async_listen("state_changed", record, event_filter=_only(LAST_READ))
    start = _last_read_ms(hass)

    for restart in range(20):
        await broker.stop_broker()
        await until(hass, lambda: _state(hass, PUSH_SENSOR) == "off")
        for _ in range(1 + restart % 3):  # reads nobody pushes
            fleet.advance(60)
        await broker.start_broker()
        await until(hass, lambda: _state(hass, PUSH_SENSOR) == "on")
        fleet.advance(60)  # and one live read after the reconnect
        newest = int(_read_time(fleet, DEMO_METER))
        await until(hass, lambda: _last_read_ms(hass) == newest)  # noqa: B023

    expected = [
        int(read["Time_Stamp_UTC_ms"])
        for read in fleet.history(DEMO_METER)
        if int(read["Time_Stamp_UTC_ms"]) > start
    ]
    assert seen == expected  # all of them, none twice, in order
    assert len(expected) == sum(1 + r % 3 for r in range(20)) + 20
    manager = push_entry.runtime_data.push
    assert manager is not None and manager.gap_fills >= 20


def _only(entity_id: str) -> Callable[[EventStateChangedData], bool]:
    @callback
    def accept(data: EventStateChangedData) -> bool:
        return data["entity_id"] == entity_id

    return accept


async def test_rejected_key_raises_repair_issue(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    broker: MqttSimulator,
    issue_registry: ir.IssueRegistry,
) -> None:
    broker.reject_key(DEMO_GATEWAY_KEY)
    entry = account_entry(cloud, broker)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    issue = push_module.issue_id(entry.entry_id, DEMO_GATEWAY_MAC)
    await until(hass, lambda: issue_registry.async_get_issue(DOMAIN, issue) is not None)
    assert _state(hass, PUSH_SENSOR) == "off"
    # Polling goes on for the gateway's meters.
    assert _state(hass, f"sensor.omnimeter_{int(DEMO_METER)}_power") != STATE_UNAVAILABLE

    # The user removes the key in the options: the issue goes away.
    result = await async_open_options(hass, entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_SCAN_INTERVAL: 60,
            CONF_STALE_THRESHOLD: 600,
            CONF_GATEWAY_KEYS: [],
            "push": {},
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert CONF_GATEWAY_KEYS not in entry.options
    assert issue_registry.async_get_issue(DOMAIN, issue) is None


async def test_malformed_and_oversized_payloads_ignored(
    hass: HomeAssistant, push_entry: MockConfigEntry, fleet: Fleet, broker: MqttSimulator
) -> None:
    before = hass.states.get(f"sensor.omnimeter_{int(DEMO_METER)}_total_energy")
    await broker.publish_faults(DEMO_GATEWAY_KEY)
    await broker.publish_raw(DEMO_GATEWAY_KEY, b'{"meter_000000010389": {"kWh_Tot": "-"}}')
    await asyncio.sleep(0.2)
    await hass.async_block_till_done()
    after = hass.states.get(f"sensor.omnimeter_{int(DEMO_METER)}_total_energy")
    assert before is not None and after is not None and after.state == before.state
    assert _state(hass, PUSH_SENSOR) == "on"
    # The stream still works.
    fleet.advance(60)
    newest = int(_read_time(fleet, DEMO_METER))
    await until(hass, lambda: _last_read_ms(hass) == newest)


async def test_partial_message_keeps_other_fields(
    hass: HomeAssistant, push_entry: MockConfigEntry, fleet: Fleet, broker: MqttSimulator
) -> None:
    """A message with some fields updates those; the others keep their fresh values."""
    reading = push_entry.runtime_data.coordinator.data.readings[DEMO_METER]
    total = float(reading.values["kWh_Tot"]) + 1.5
    stamp = reading.timestamp_ms + 1000
    payload = f'{{"meter_{DEMO_METER}": {{"kWh_Tot": "{total}", "Time_Stamp_UTC_ms": {stamp}}}}}'
    await broker.publish_raw(DEMO_GATEWAY_KEY, payload.encode())
    await until(hass, lambda: _last_read_ms(hass) == stamp)
    state = hass.states.get(f"sensor.omnimeter_{int(DEMO_METER)}_total_energy")
    assert state is not None and float(state.state) == pytest.approx(total)
    imported = hass.states.get(f"sensor.omnimeter_{int(DEMO_METER)}_energy_imported")
    rev = float(reading.values["Rev_kWh_Tot"])
    assert imported is not None and float(imported.state) == pytest.approx(total - rev)
    assert _state(hass, f"sensor.omnimeter_{int(DEMO_METER)}_voltage_l1") != STATE_UNAVAILABLE


async def test_unload_leaves_nothing_running(
    hass: HomeAssistant, push_entry: MockConfigEntry, broker: MqttSimulator
) -> None:
    assert broker.broker.session_count == 1
    assert await hass.config_entries.async_unload(push_entry.entry_id)
    await hass.async_block_till_done()
    assert push_entry.state is ConfigEntryState.NOT_LOADED
    await until(hass, lambda: broker.broker.session_count == 0)
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert not any("push" in name for name in names)


async def test_diagnostics_show_push_without_keys(
    hass: HomeAssistant, push_entry: MockConfigEntry
) -> None:
    from custom_components.ekm.diagnostics import async_get_config_entry_diagnostics

    diagnostics = await async_get_config_entry_diagnostics(hass, push_entry)
    assert DEMO_GATEWAY_KEY not in repr(diagnostics)
    assert diagnostics["push"]["gateways"][DEMO_GATEWAY_MAC]["connected"] is True
    assert diagnostics["entry"]["options"][CONF_GATEWAY_KEYS] == "**REDACTED**"


# --- config flow and options with gateway keys ---------------------------------------------


async def _to_gateway_step(hass: HomeAssistant, cloud: CloudSimulator) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "cloud"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: DEMO_ACCOUNT_KEY, "advanced": {CONF_SERVER: cloud.url}}
    )
    assert result["step_id"] == "gateway_keys"
    return result["flow_id"]


async def test_flow_with_gateway_key(
    hass: HomeAssistant, cloud: CloudSimulator, broker: MqttSimulator
) -> None:
    flow_id = await _to_gateway_step(hass, cloud)
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_GATEWAY_KEYS: [DEMO_GATEWAY_KEY],
            "push": {CONF_MQTT_SERVER: broker.url, CONF_MQTT_CA_FILE: str(broker.ca_file)},
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"] == push_options(broker)
    await hass.async_block_till_done()
    await until(hass, lambda: _state(hass, PUSH_SENSOR) == "on")


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("rejected", {"base": "invalid_gateway_key"}),
        ("unknown_key", {"base": "invalid_gateway_key"}),
        ("account_key", {"base": "gateway_not_on_account"}),
        ("broker_down", {"base": "mqtt_cannot_connect"}),
        ("bad_ca", {"push": "invalid_ca_file"}),
        ("bad_server", {"push": "invalid_mqtt_server"}),
        ("untrusted", {"base": "mqtt_cannot_connect"}),
        ("cloud_down", {"base": "cannot_connect"}),
    ],
)
async def test_flow_gateway_key_errors(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    broker: MqttSimulator,
    tmp_path: Path,
    case: str,
    error: dict[str, str],
) -> None:
    flow_id = await _to_gateway_step(hass, cloud)
    key = DEMO_GATEWAY_KEY
    push = {CONF_MQTT_SERVER: broker.url, CONF_MQTT_CA_FILE: str(broker.ca_file)}
    if case == "rejected":
        broker.reject_key(key)
    elif case == "unknown_key":
        key = "OTk5OTk6bm90LWEta2V5"
    elif case == "account_key":
        key = DEMO_ACCOUNT_KEY
    elif case == "broker_down":
        await broker.stop_broker()
    elif case == "bad_ca":
        push[CONF_MQTT_CA_FILE] = str(tmp_path / "missing.pem")
    elif case == "bad_server":
        push[CONF_MQTT_SERVER] = "http://127.0.0.1:1"
    elif case == "untrusted":
        push[CONF_MQTT_CA_FILE] = ""
    elif case == "cloud_down":
        cloud.faults.error_rates = {503: 1.0}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_GATEWAY_KEYS: [key], "push": push}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == error
    if case == "broker_down":
        await broker.start_broker()


async def test_options_add_and_remove_gateway_key(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, broker: MqttSimulator
) -> None:
    push = {CONF_MQTT_SERVER: broker.url, CONF_MQTT_CA_FILE: str(broker.ca_file)}
    result = await async_open_options(hass, loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_SCAN_INTERVAL: 60,
            CONF_STALE_THRESHOLD: 600,
            CONF_NEW_GATEWAY_KEYS: [DEMO_GATEWAY_KEY],
            "push": push,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_GATEWAY_KEYS] == {DEMO_GATEWAY_KEY: DEMO_GATEWAY_MAC}
    await until(hass, lambda: _state(hass, PUSH_SENSOR) == "on")

    # The key is never sent back to the form: it is offered by gateway MAC.
    result = await async_open_options(hass, loaded_entry.entry_id)
    assert DEMO_GATEWAY_KEY not in repr(result["data_schema"].schema)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_SCAN_INTERVAL: 60, CONF_STALE_THRESHOLD: 600, CONF_GATEWAY_KEYS: [], "push": push},
    )
    await hass.async_block_till_done()
    assert CONF_GATEWAY_KEYS not in loaded_entry.options


async def test_options_rejects_bad_new_key(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, broker: MqttSimulator
) -> None:
    broker.reject_key(DEMO_GATEWAY_KEY)
    result = await async_open_options(hass, loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_SCAN_INTERVAL: 60,
            CONF_STALE_THRESHOLD: 600,
            CONF_NEW_GATEWAY_KEYS: [DEMO_GATEWAY_KEY],
            "push": {CONF_MQTT_SERVER: broker.url, CONF_MQTT_CA_FILE: str(broker.ca_file)},
        },
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_gateway_key"}


async def test_summary_messages_are_kept(
    hass: HomeAssistant, push_entry: MockConfigEntry, fleet: Fleet
) -> None:
    """15-minute summaries are parsed and kept for the history work."""
    manager = push_entry.runtime_data.push
    assert manager is not None
    for _ in range(16):
        fleet.advance(60)
    await until(hass, lambda: DEMO_METER in manager.summaries)
    assert manager.summaries[DEMO_METER].values


async def test_key_accepted_again_clears_issue(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    broker: MqttSimulator,
    issue_registry: ir.IssueRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(push_module, "REJECTED_KEY_RETRY_S", 0.05)
    broker.reject_key(DEMO_GATEWAY_KEY)
    entry = account_entry(cloud, broker)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    issue = push_module.issue_id(entry.entry_id, DEMO_GATEWAY_MAC)
    await until(hass, lambda: issue_registry.async_get_issue(DOMAIN, issue) is not None)
    broker.accept_key(DEMO_GATEWAY_KEY)
    await until(hass, lambda: _state(hass, PUSH_SENSOR) == "on")
    assert issue_registry.async_get_issue(DOMAIN, issue) is None


async def test_gap_fill_failure_still_resumes(
    hass: HomeAssistant,
    push_entry: MockConfigEntry,
    fleet: Fleet,
    broker: MqttSimulator,
    cloud: CloudSimulator,
) -> None:
    """If the Realtime API fails during a gap fill, the stream still resumes."""
    manager = push_entry.runtime_data.push
    assert manager is not None
    fills = manager.gap_fills
    await broker.stop_broker()
    await until(hass, lambda: _state(hass, PUSH_SENSOR) == "off")
    cloud.faults.error_rates = {500: 1.0}
    await broker.start_broker()
    await until(hass, lambda: _state(hass, PUSH_SENSOR) == "on")
    assert manager.gap_fills == fills
    cloud.faults.reset()
    fleet.advance(60)
    newest = int(_read_time(fleet, DEMO_METER))
    await until(hass, lambda: _last_read_ms(hass) == newest)


async def test_relay_confirmed_by_pushed_reading(
    hass: HomeAssistant, push_entry: MockConfigEntry, cloud: CloudSimulator, fleet: Fleet
) -> None:
    """With push on, the gateway's own report after the command confirms it: no poll."""
    relay = f"switch.omnimeter_{int(DEMO_METER)}_relay_1"
    cloud.reset_counts()
    await hass.services.async_call("switch", "turn_on", {"entity_id": relay}, blocking=True)
    assert hass.states.get(relay).attributes["pending"] is True
    await until(hass, lambda: hass.states.get(relay).attributes["pending"] is False)
    assert hass.states.get(relay).state == "on"
    assert fleet.meters[DEMO_METER].relays[0] is True
    assert cloud.requests["readMeter"] == 0
    assert cloud.requests["sendCommand"] == 1


async def test_gateway_key_entry_pushes_without_asking_again(
    hass: HomeAssistant, cloud: CloudSimulator, broker: MqttSimulator, fleet: Fleet
) -> None:
    """A gateway key is also its MQTT key: the entry pushes with it, nothing asked twice."""
    flow_id = await _start_cloud_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_API_KEY: DEMO_GATEWAY_KEY, "advanced": {CONF_SERVER: cloud.url}}
    )
    assert result["step_id"] == "gateway_push"
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            "use_push": True,
            "push": {CONF_MQTT_SERVER: broker.url, CONF_MQTT_CA_FILE: str(broker.ca_file)},
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "EKM Push gateway Demo Push3"
    assert result["options"][CONF_GATEWAY_KEYS] == {DEMO_GATEWAY_KEY: DEMO_GATEWAY_MAC}
    await hass.async_block_till_done()
    await until(hass, lambda: _state(hass, PUSH_SENSOR) == "on")
    entry = result["result"]
    assert set(entry.runtime_data.coordinator.data.devices) == {DEMO_METER, V3_ON_DEMO_GATEWAY}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def _start_cloud_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "cloud"}
    )
    return str(result["flow_id"])


# --- stopping is silent (issue 10, item 7) ---------------------------------------------------


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Every call of the event loop's exception handler (still passed on to the test's)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    calls: list[dict[str, Any]] = []

    def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        calls.append(context)
        if previous is not None:
            previous(loop, context)

    loop.set_exception_handler(record)
    try:
        yield calls
    finally:
        loop.set_exception_handler(previous)


async def _assert_nothing_left(
    broker: MqttSimulator, caplog: pytest.LogCaptureFixture, loop_errors: list[dict[str, Any]]
) -> None:
    async with asyncio.timeout(20):  # the broker has yet to read the DISCONNECT
        while broker.broker.session_count:
            await asyncio.sleep(0.01)
    gc.collect()  # also reports futures whose exception was never retrieved
    tasks = [repr(t.get_coro()) + t.get_name() for t in asyncio.all_tasks()]
    assert not [t for t in tasks if "_misc_loop" in t or " push " in t]
    paho_sockets = [o for o in gc.get_objects() if isinstance(o, ssl.SSLSocket) and o.fileno() >= 0]
    assert paho_sockets == []
    assert [(c.get("message"), c.get("exception")) for c in loop_errors] == []
    assert "Exception in callback" not in caplog.text
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert [f"{r.levelname} {r.name}: {r.getMessage()}" for r in noisy] == []


async def test_unload_ten_times_is_silent(
    hass: HomeAssistant,
    push_entry: MockConfigEntry,
    broker: MqttSimulator,
    caplog: pytest.LogCaptureFixture,
    loop_errors: list[dict[str, Any]],
) -> None:
    """Unload (and set up again) 10 times; every other time the broker drops the
    connection in the very step the unload cancels the stream (just before it)."""
    for cycle in range(10):
        if cycle % 2:
            push_entry.async_on_unload(broker.drop_connections)
        assert await hass.config_entries.async_unload(push_entry.entry_id)
        await hass.async_block_till_done()
        assert push_entry.state is ConfigEntryState.NOT_LOADED
        await _assert_nothing_left(broker, caplog, loop_errors)
        assert await hass.config_entries.async_setup(push_entry.entry_id)
        await until(hass, lambda: _state(hass, PUSH_SENSOR) == "on")


@pytest.mark.parametrize("broker_goes_too", [False, True])
async def test_home_assistant_stop_is_silent(
    hass: HomeAssistant,
    push_entry: MockConfigEntry,
    broker: MqttSimulator,
    caplog: pytest.LogCaptureFixture,
    loop_errors: list[dict[str, Any]],
    broker_goes_too: bool,
) -> None:
    """hass.async_stop while connected: the push task ends, and nothing complains.

    ``broker_goes_too``: the broker drops the connection in the very step Home Assistant
    cancels the stream (just after it), as when it and the simulator stop together.
    """
    if broker_goes_too:
        hass.bus.async_listen_once(
            EVENT_HOMEASSISTANT_STOP, callback(lambda _event: broker.drop_connections())
        )
    async with asyncio.timeout(30):
        await hass.async_stop()
    await _assert_nothing_left(broker, caplog, loop_errors)
