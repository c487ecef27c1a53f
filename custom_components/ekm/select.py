"""Meter settings with fixed choices (CT ratio, demand period...), over RS-485."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from homeassistant.components.select import SelectEntity, SelectEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import EkmConfigEntry
from .entity import EkmCommandEntity, async_add_meter_entities, is_v4
from .pyekm import MeterReading
from .pyekm.catalog import CT_RATIOS, ENUMS, PULSE_OUTPUT_RATIOS
from .pyekm.rs485.client import EkmBus

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class EkmSelectDescription(SelectEntityDescription):
    """A setting: its field, its options (option -> code) and its command."""

    field: str
    codes: Mapping[str, int]
    set_fn: Callable[[EkmBus, str, int, str | None], Awaitable[None]]
    supported_fn: Callable[[MeterReading], bool] = lambda _: True


def _numbers(values: tuple[int, ...]) -> dict[str, int]:
    return {str(v): v for v in values}


def _enum(field: str) -> dict[str, int]:
    return {name: code for code, name in ENUMS[field].items()}


SELECTS = (
    EkmSelectDescription(
        key="ct_ratio",
        translation_key="ct_ratio",
        field="CT_Ratio",
        codes=_numbers(CT_RATIOS),
        options=list(_numbers(CT_RATIOS)),
        set_fn=lambda bus, a, v, pw: bus.set_ct_ratio(a, v, password=pw),
    ),
    EkmSelectDescription(
        key="max_demand_period",
        translation_key="max_demand_period",
        field="Max_Demand_Period",
        codes=_enum("Max_Demand_Period"),
        options=list(_enum("Max_Demand_Period")),
        set_fn=lambda bus, a, v, pw: bus.set_max_demand_period(a, v, password=pw),
    ),
    EkmSelectDescription(
        key="max_demand_auto_reset",
        translation_key="max_demand_auto_reset",
        field="Max_Demand_Rst",
        codes=_enum("Max_Demand_Rst"),
        options=list(_enum("Max_Demand_Rst")),
        set_fn=lambda bus, a, v, pw: bus.set_max_demand_auto_reset(a, v, password=pw),
        supported_fn=is_v4,
    ),
    EkmSelectDescription(
        key="pulse_output_ratio",
        translation_key="pulse_output_ratio",
        field="CF_Ratio",
        codes=_numbers(PULSE_OUTPUT_RATIOS),
        options=list(_numbers(PULSE_OUTPUT_RATIOS)),
        set_fn=lambda bus, a, v, pw: bus.set_pulse_output_ratio(a, v, password=pw),
        supported_fn=is_v4,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the settings each meter reports and supports."""
    async_add_meter_entities(
        entry,
        async_add_entities,
        SELECTS,
        lambda d, reading: d.field in reading.values and d.supported_fn(reading),
        EkmSelect,
    )


class EkmSelect(EkmCommandEntity, SelectEntity):
    """A meter setting with fixed choices."""

    entity_description: EkmSelectDescription
    _attr_entity_category = EntityCategory.CONFIG

    @property
    def current_option(self) -> str | None:
        """The meter's current setting."""
        reading = self.reading
        code = reading.number(self.entity_description.field) if reading else None
        if code is None:
            return None
        return next((o for o, c in self.entity_description.codes.items() if c == code), None)

    async def async_select_option(self, option: str) -> None:
        """Write the setting to the meter."""
        self._require_reading()
        code = self.entity_description.codes[option]
        bus = self.bus
        await self.coordinator.async_command(
            self.address, lambda a, pw: self.entity_description.set_fn(bus, a, code, pw)
        )
