"""Fixtures for the Home Assistant integration tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
import json
from pathlib import Path
import re
from typing import Any

from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, section
from homeassistant.helpers.selector import TextSelector
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ekm.const import CONF_SERVER, DOMAIN
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_ACCOUNT_KEY


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/ekm in every test."""


@pytest.fixture(autouse=True)
def expected_lingering_timers() -> bool:
    """Fail a test that leaves a timer running at teardown.

    The plugin's own default lets every test under ``tests/components/`` that is not a
    base platform leave timers behind with only a warning (it takes our test files for
    integrations); our tests must clean up, so a lingering timer fails them.
    """
    return False


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


# --- every form renders: the texts a flow step shows have all their placeholders ----------

STRINGS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "custom_components/ekm/strings.json").read_text()
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _texts(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in _texts(value)]
    return []


def check_rendered(result: Any, where: str) -> None:
    """Fail as the frontend would: a text of this step (or abort) uses a placeholder the
    flow did not fill, a field has no label, or a multi-value text field is labelled
    "Add ..." (the frontend already puts "Add" before that label on its button).

    ``where`` is the flow's part of strings.json: ``config``, ``options`` or
    ``issues.<translation key>`` (a repair flow).
    """
    root = STRINGS
    for part in where.split("."):
        root = root[part]
    if where.startswith("issues."):
        root = root["fix_flow"]
    kind = result["type"]
    if kind is FlowResultType.CREATE_ENTRY:
        return
    if kind is FlowResultType.ABORT:
        texts = [root["abort"][result["reason"]]]
    else:
        step = root["step"][result["step_id"]]
        texts = _texts(step)
        for error in (result.get("errors") or {}).values():
            texts.append(root["error"][error])
        if kind is FlowResultType.FORM and result.get("data_schema") is not None:
            _check_labels(result["data_schema"].schema, step, result["step_id"])
        if kind is FlowResultType.MENU:
            labels = step.get("menu_options", {})
            unlabelled = [o for o in result["menu_options"] if not labels.get(o)]
            assert not unlabelled, f"{result['step_id']}: menu options {unlabelled} unlabelled"
    filled = set(result.get("description_placeholders") or {})
    missing = {name for text in texts for name in _PLACEHOLDER.findall(text)} - filled
    assert not missing, f"{result.get('step_id') or result.get('reason')}: {missing} not filled"


def _check_labels(schema: Mapping[Any, Any], step: Mapping[str, Any], where: str) -> None:
    for key, validator in schema.items():
        name = str(key)
        if isinstance(validator, section):
            inner = step.get("sections", {}).get(name)
            assert inner is not None and inner.get("name"), f"{where}: section {name} unnamed"
            _check_labels(validator.schema.schema, inner, f"{where}.{name}")
            continue
        label = step.get("data", {}).get(name)
        assert label, f"{where}: field {name} has no label"
        config = getattr(validator, "config", {})
        if isinstance(validator, TextSelector) and config.get("multiple"):
            assert not label.lower().startswith("add "), f"{where}: {name} reads 'Add {label}'"


@pytest.fixture
def rendered() -> Callable[[Any, str], None]:
    """``rendered(result, "config")``: assert the flow result renders (see above)."""
    return check_rendered
