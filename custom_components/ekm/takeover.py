"""Taking over an existing sensor's entity id, so that its history continues.

An owner who read a meter with ``rest`` or template sensors, the ``ekm_local``
integration or another EKM entry has months of history, long-term statistics and
Energy dashboard references under that sensor's entity id. The options step here hands
the id to one of this entry's sensors, after a confirmation that says what changes:

1. The old sensor's entity registry entry is removed (only after the owner confirmed;
   the integration that made it, its YAML or config entry, is not changed; optionally its
   config entry is disabled, which keeps everything of it).
2. Our sensor is renamed to the old entity id. The recorder keeps the rows it has under
   that id, so history and statistics continue; it logs that it could not move our
   sensor's own (short) history onto an id already in use, which is what we want.
3. Where the old sensor used another unit of the same kind (Wh for kWh), our sensor is
   set to display that unit, so the long-term statistics keep their unit.

A sensor without a unique id (YAML without ``unique_id``) cannot be handed over while it
runs; the owner removes it first, and its id (kept by the recorder) is offered then.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from homeassistant.components.recorder.statistics import async_list_statistic_ids
from homeassistant.components.sensor import DOMAIN as SENSOR_DOMAIN
from homeassistant.components.sensor.const import UNIT_CONVERTERS
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryDisabler,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import ATTR_RESTORED, ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er, restore_state
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)
import probatio as vol

from .const import DOMAIN, LOGGER

if TYPE_CHECKING:
    from . import EkmConfigEntry

CONF_OLD_ENTITY = "old_entity"
CONF_NEW_ENTITY = "new_entity"
CONF_DISABLE_SOURCE = "disable_source"
# How long the old sensor's integration may take to remove it after its registry entry.
REMOVAL_TIMEOUT = 10.0


class TakeOverFlowMixin(OptionsFlow):
    """Options steps ``take_over`` and ``take_over_confirm``."""

    config_entry: EkmConfigEntry
    _take_over: tuple[str, str]

    async def async_step_take_over(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the existing sensor and the sensor of this entry that takes its id."""
        registry = er.async_get(self.hass)
        ours = _our_sensors(registry, self.config_entry)
        if not ours:
            return self.async_abort(reason="no_sensors")
        errors: dict[str, str] = {}
        if user_input is not None:
            old = str(user_input.get(CONF_OLD_ENTITY) or "").strip().lower()
            new = user_input[CONF_NEW_ENTITY]
            error = _check(self.hass, registry, old, new, ours)
            if error is None:
                self._take_over = (old, new)
                return await self.async_step_take_over_confirm()
            errors[CONF_OLD_ENTITY] = error
        candidates = await _async_candidates(self.hass, registry, self.config_entry)
        schema = vol.Schema(
            {
                # Optional for the form only (a required list preselects its first entry).
                vol.Optional(CONF_OLD_ENTITY): SelectSelector(
                    SelectSelectorConfig(
                        options=candidates,
                        custom_value=True,
                        mode=SelectSelectorMode.DROPDOWN,
                        sort=True,
                    )
                ),
                vol.Required(CONF_NEW_ENTITY): EntitySelector(
                    EntitySelectorConfig(include_entities=ours)
                ),
            }
        )
        return self.async_show_form(
            step_id="take_over",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )

    async def async_step_take_over_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Say what will change; change it only when the owner submits."""
        old, new = self._take_over
        registry = er.async_get(self.hass)
        old_entry = registry.async_get(old)
        source = (
            self.hass.config_entries.async_get_entry(old_entry.config_entry_id)
            if old_entry is not None and old_entry.config_entry_id
            else None
        )
        if user_input is not None:
            error = _check(self.hass, registry, old, new, _our_sensors(registry, self.config_entry))
            if error is not None:
                return self.async_abort(reason=error)
            unit = _unit_to_keep(self.hass, old, new)
            if old_entry is not None:
                await _async_remove_old(self.hass, registry, old)
            if not self.hass.states.async_available(old):
                return self.async_abort(reason="still_running")
            # The old sensor left its last state to restore under its id: ours, re-added
            # under that id, must keep its own totals (never-backwards guard), not the
            # old sensor's value in another unit or with another offset.
            restore_state.async_get(self.hass).last_states.pop(old, None)
            registry.async_update_entity(new, new_entity_id=old)
            if unit is not None:
                registry.async_update_entity_options(
                    old, SENSOR_DOMAIN, {ATTR_UNIT_OF_MEASUREMENT: unit}
                )
            if source is not None and user_input.get(CONF_DISABLE_SOURCE):
                await self.hass.config_entries.async_set_disabled_by(
                    source.entry_id, ConfigEntryDisabler.USER
                )
            LOGGER.info("%s took over the entity id %s", new, old)
            return self.async_abort(
                reason="taken_over", description_placeholders={"old": old, "new": new}
            )
        schema: dict[Any, Any] = {}
        if source is not None and source.domain != DOMAIN:
            schema[vol.Optional(CONF_DISABLE_SOURCE, default=False)] = BooleanSelector()
        return self.async_show_form(
            step_id="take_over_confirm",
            data_schema=vol.Schema(schema),
            description_placeholders=_describe(self.hass, old, new, old_entry, source),
            last_step=True,
        )


def _our_sensors(registry: er.EntityRegistry, entry: EkmConfigEntry) -> list[str]:
    """The enabled sensors of this entry."""
    return sorted(
        e.entity_id
        for e in er.async_entries_for_config_entry(registry, entry.entry_id)
        if e.domain == SENSOR_DOMAIN and e.disabled_by is None
    )


async def _async_candidates(
    hass: HomeAssistant, registry: er.EntityRegistry, entry: EkmConfigEntry
) -> list[SelectOptionDict]:
    """Measuring sensors of other integrations or entries, and ids only the recorder has."""
    options: dict[str, str] = {}
    for state in hass.states.async_all(SENSOR_DOMAIN):
        if ATTR_UNIT_OF_MEASUREMENT not in state.attributes:
            continue  # not a measurement whose history is worth keeping
        reg = registry.async_get(state.entity_id)
        if reg is not None and reg.config_entry_id == entry.entry_id:
            continue
        origin = reg.platform if reg is not None else "YAML"
        options[state.entity_id] = f"{state.name} ({state.entity_id}, {origin})"
    if "recorder" in hass.config.components:
        for stat in await async_list_statistic_ids(hass, statistic_type="sum"):
            stat_id: str = stat["statistic_id"]
            orphan = stat_id not in options and registry.async_get(stat_id) is None
            if stat_id.startswith(f"{SENSOR_DOMAIN}.") and orphan:
                options[stat_id] = f"{stat_id} (history only)"
    return [SelectOptionDict(value=v, label=label) for v, label in options.items()]


def _check(
    hass: HomeAssistant, registry: er.EntityRegistry, old: str, new: str, ours: list[str]
) -> str | None:
    """The error key for a take-over that cannot be done, or None."""
    if new not in ours:
        return "not_ours"
    if not old.startswith(f"{SENSOR_DOMAIN}.") or old == new:
        return "invalid_entity"
    old_entry = registry.async_get(old)
    if old_entry is not None and old_entry.entity_id in ours:
        return "invalid_entity"
    state = hass.states.get(old)
    if old_entry is None and state is not None and not state.attributes.get(ATTR_RESTORED):
        return "no_unique_id"
    if _unit_to_keep(hass, old, new) is False:
        return "unit_mismatch"
    return None


def _unit_to_keep(hass: HomeAssistant, old: str, new: str) -> str | bool | None:
    """The old unit where ours should show it (Wh for kWh); False if they cannot match."""
    old_state, new_state = hass.states.get(old), hass.states.get(new)
    old_unit = old_state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) if old_state else None
    new_unit = new_state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) if new_state else None
    if old_state is None or old_unit == new_unit:
        return None
    converter = UNIT_CONVERTERS.get(new_state.attributes.get("device_class") if new_state else None)
    if converter is not None and old_unit in converter.VALID_UNITS:
        return str(old_unit)
    return False


async def _async_remove_old(hass: HomeAssistant, registry: er.EntityRegistry, old: str) -> None:
    """Remove the old registry entry and wait until its integration removed the entity."""
    gone = asyncio.Event()

    @callback
    def _on_change(event: Event[EventStateChangedData]) -> None:
        if event.data["new_state"] is None:
            gone.set()

    unsub = async_track_state_change_event(hass, old, _on_change)
    try:
        registry.async_remove(old)
        state = hass.states.get(old)
        if state is not None and state.attributes.get(ATTR_RESTORED):
            hass.states.async_remove(old)  # a placeholder of an entity that is not loaded
        if hass.states.get(old) is not None:
            async with asyncio.timeout(REMOVAL_TIMEOUT):
                await gone.wait()
    except TimeoutError:
        LOGGER.warning("%s was not removed by its integration in time", old)
    finally:
        unsub()


def _describe(
    hass: HomeAssistant,
    old: str,
    new: str,
    old_entry: er.RegistryEntry | None,
    source: ConfigEntry | None,
) -> dict[str, str]:
    """The confirmation's placeholders: both sensors, their values, what happens."""

    def value(entity_id: str) -> str:
        state = hass.states.get(entity_id)
        if state is None:
            return "no current value"
        unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
        return f"{state.state} {unit}" if unit else state.state

    if old_entry is None:
        origin = "no longer provided; the recorder still has its history"
    elif source is not None:
        origin = f"from the {source.title} entry ({old_entry.platform})"
    else:
        origin = f"from the {old_entry.platform} integration"
    unit = _unit_to_keep(hass, old, new)
    return {
        "old": old,
        "old_origin": origin,
        "old_value": value(old),
        "new": new,
        "new_value": value(new),
        "unit": f" It will show {unit}, as {old} did." if isinstance(unit, str) else "",
    }
