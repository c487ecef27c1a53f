"""Taking over an existing sensor's entity id: history and statistics continue under it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from homeassistant.components.recorder import Recorder
from homeassistant.components.recorder.history import get_significant_states
from homeassistant.config_entries import ConfigEntryDisabler
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.recorder import get_instance
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.ekm.const import CONF_HISTORY, DOMAIN
from ekmsim.fleet import DEMO_METER
from tests.components.flows import async_open_options

OURS = f"sensor.omnimeter_{int(DEMO_METER)}_total_energy"
OLD = "sensor.water_heater_kwh"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """The recorder first (it must see the registry's rename events), then our integration."""


def _template(unit: str = "kWh", *, unique_id: bool = True) -> dict[str, Any]:
    sensor: dict[str, Any] = {
        "name": "Water heater kWh",
        "state": "{{ 99999.5 if unit == 'kWh' else 99999500 }}".replace("unit", repr(unit)),
        "unit_of_measurement": unit,
        "device_class": "energy",
        "state_class": "total_increasing",
    }
    if unique_id:
        sensor["unique_id"] = "water_heater_kwh"
    return {"template": [{"sensor": [sensor]}]}


async def _setup(
    hass: HomeAssistant, make_entry: Callable[..., MockConfigEntry], template: dict[str, Any]
) -> MockConfigEntry:
    assert await async_setup_component(hass, "template", template)
    await hass.async_block_till_done()
    entry = make_entry(**{CONF_HISTORY: False})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    return entry


async def _pick(hass: HomeAssistant, entry: MockConfigEntry, old: str, new: str = OURS) -> Any:
    result = await async_open_options(hass, entry.entry_id, "take_over")
    assert result["step_id"] == "take_over"
    return await hass.config_entries.options.async_configure(
        result["flow_id"], {"old_entity": old, "new_entity": new}
    )


def _history(hass: HomeAssistant, entity_id: str) -> list[str]:
    start = dt_util.utcnow() - timedelta(hours=1)
    states = get_significant_states(hass, start, entity_ids=[entity_id])
    return [s.state for s in states.get(entity_id, [])]


async def test_take_over_a_template_sensor(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    rendered: Callable[[Any, str], None],
) -> None:
    entry = await _setup(hass, make_entry, _template())
    registry = er.async_get(hass)
    assert registry.async_get(OLD) is not None
    ours = hass.states.get(OURS)
    assert ours is not None

    result = await async_open_options(hass, entry.entry_id, "take_over")
    rendered(result, "options")
    labels = {
        o["value"]: o["label"] for o in result["data_schema"].schema["old_entity"].config["options"]
    }
    assert labels[OLD] == f"Water heater kWh ({OLD}, template)"
    assert not any(value == OURS for value in labels)  # our own sensors are not offered
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"new_entity": OURS}
    )
    assert result["errors"] == {"old_entity": "invalid_entity"}  # nothing picked

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"old_entity": OLD, "new_entity": OURS}
    )
    assert result["step_id"] == "take_over_confirm"
    rendered(result, "options")
    placeholders = result["description_placeholders"]
    assert placeholders["old_value"] == "99999.5 kWh"
    assert placeholders["new_value"] == f"{ours.state} kWh"
    assert "template" in placeholders["old_origin"]
    # Nothing changed yet.
    assert registry.async_get(OLD) is not None and registry.async_get(OURS) is not None

    result = await hass.config_entries.options.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "taken_over"
    rendered(result, "options")
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)

    taken = registry.async_get(OLD)
    assert taken is not None and taken.platform == DOMAIN
    assert registry.async_get(OURS) is None
    assert hass.states.get(OLD).state == ours.state  # type: ignore[union-attr]
    # The old sensor's recorded states and ours are one history under the old id.
    history = await get_instance(hass).async_add_executor_job(_history, hass, OLD)
    assert history[0] == "99999.5" and history[-1] == ours.state
    # The entry reloads as usual and our sensor stays under the old id.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(OLD).state == ours.state  # type: ignore[union-attr]
    assert hass.states.get(OURS) is None


async def test_take_over_keeps_the_old_unit(
    hass: HomeAssistant, make_entry: Callable[..., MockConfigEntry]
) -> None:
    """A Wh sensor taken over: ours shows Wh, so long-term statistics keep their unit."""
    entry = await _setup(hass, make_entry, _template("Wh"))
    value = float(hass.states.get(OURS).state)  # type: ignore[union-attr]
    result = await _pick(hass, entry, OLD)
    assert "It will show Wh" in result["description_placeholders"]["unit"]
    result = await hass.config_entries.options.async_configure(result["flow_id"], {})
    assert result["reason"] == "taken_over"
    await hass.async_block_till_done()
    state = hass.states.get(OLD)
    assert state is not None and state.attributes["unit_of_measurement"] == "Wh"
    assert float(state.state) == pytest.approx(value * 1000)


async def test_take_over_refusals(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
    rendered: Callable[[Any, str], None],
) -> None:
    """A running sensor without a unique id, another unit kind, or one of our own."""
    entry = await _setup(hass, make_entry, _template(unique_id=False))
    result = await _pick(hass, entry, OLD)
    assert result["errors"] == {"old_entity": "no_unique_id"}
    rendered(result, "options")

    power = f"sensor.omnimeter_{int(DEMO_METER)}_power"
    result = await _pick(hass, entry, OLD, power)
    assert result["errors"] == {"old_entity": "no_unique_id"}
    result = await _pick(hass, entry, power)
    assert result["errors"] == {"old_entity": "invalid_entity"}
    result = await _pick(hass, entry, "light.kitchen")
    assert result["errors"] == {"old_entity": "invalid_entity"}
    assert hass.states.get(OLD) is not None and hass.states.get(OURS) is not None


async def test_take_over_unit_mismatch_and_removed_sensor(
    hass: HomeAssistant,
    make_entry: Callable[..., MockConfigEntry],
) -> None:
    """kWh cannot become W; a removed sensor's id (history only) can be taken over."""
    entry = await _setup(hass, make_entry, _template())
    power = f"sensor.omnimeter_{int(DEMO_METER)}_power"
    result = await _pick(hass, entry, OLD, power)
    assert result["errors"] == {"old_entity": "unit_mismatch"}

    # The owner removed the old sensor already: only the recorder remembers its id.
    er.async_get(hass).async_remove(OLD)
    await hass.async_block_till_done()
    assert hass.states.get(OLD) is None
    result = await _pick(hass, entry, OLD)
    assert result["step_id"] == "take_over_confirm"
    assert "no longer provided" in result["description_placeholders"]["old_origin"]
    result = await hass.config_entries.options.async_configure(result["flow_id"], {})
    assert result["reason"] == "taken_over"
    await hass.async_block_till_done()
    assert er.async_get(hass).async_get(OLD).platform == DOMAIN  # type: ignore[union-attr]


async def test_take_over_an_other_entry_and_disable_it(
    hass: HomeAssistant, make_entry: Callable[..., MockConfigEntry]
) -> None:
    """Another integration's config entry: disabled on request, kept otherwise."""
    entry = await _setup(hass, make_entry, {})
    source = MockConfigEntry(
        domain="template",
        title="Water heater kWh",
        options={
            "template_type": "sensor",
            "name": "Water heater kWh",
            "state": "{{ 99999.5 }}",
            "unit_of_measurement": "kWh",
            "device_class": "energy",
            "state_class": "total_increasing",
        },
    )
    source.add_to_hass(hass)
    assert await hass.config_entries.async_setup(source.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(OLD) is not None

    result = await _pick(hass, entry, OLD)
    assert "disable_source" in {str(k) for k in result["data_schema"].schema}
    assert "Water heater kWh entry" in result["description_placeholders"]["old_origin"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"disable_source": True}
    )
    assert result["reason"] == "taken_over"
    await hass.async_block_till_done()
    assert source.disabled_by is ConfigEntryDisabler.USER
    assert hass.states.get(OLD) is not None  # ours
    assert er.async_get(hass).async_get(OLD).platform == DOMAIN  # type: ignore[union-attr]
