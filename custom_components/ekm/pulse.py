"""Pulse inputs that mean something: what is wired to a v4/v5 meter's inputs 1-3.

An Omnimeter v4/v5 counts the pulses of up to three meters on its pulse inputs
(``Pulse_Cnt_1..3``): a water meter, a gas meter, an electricity sub-meter. The options
(``entry.options["pulse_inputs"]``, written by ``pulse_flow.py``) say per meter and input
what is connected and how much one pulse is::

    {"<12-digit address>": {"<n>": {"kind": "water", "per_pulse": 0.1, "unit": "gal"}}}

An input that has nothing connected is absent. Each configured input gets

- a total (``Pulse_Cnt_n`` x amount per pulse) with the device class the Energy dashboard
  wants (water, gas, energy; none for "other"), state class total_increasing, never 0 or
  backwards (EkmSensor's monotonic register, restored across restarts);
- a flow rate (volume flow rate for water and gas, W for electricity) from the readings
  of the last few minutes, unknown until two readings and after a gap;
- with the history import on, external statistics ``ekm:<address>_pulse_<n>``
  (``pulse_history.py``).

The pulse ratio (the one place this inference is made): EKM does not document
``Pulse_Ratio_n``. The meter's LCD lists "Raw_Pulse_n" beside "Pulse_Cnt_n" and the ratio
is settable 1-9999, so [INF] ``Pulse_Cnt_n`` is probably the raw pulses divided by
``Pulse_Ratio_n``. The amount per pulse is therefore applied to ``Pulse_Cnt_n`` as the
meter reports it (one count), never to the ratio; the ratio is shown as an attribute so
an owner with a ratio other than 1 can enter the amount per count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
import math
import re
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import UnitOfEnergy, UnitOfPower, UnitOfVolume, UnitOfVolumeFlowRate
from homeassistant.core import callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import EkmCoordinator
from .entity import EkmEntity, async_add_meter_entities
from .meter_sensor import EkmSensor, EkmSensorEntityDescription
from .pyekm import MeterReading, normalize_address

if TYPE_CHECKING:
    from . import EkmConfigEntry

CONF_PULSE_INPUTS: Final = "pulse_inputs"
INPUTS: Final = (1, 2, 3)
# The flow rate is the average over the readings of this window (a pulse is a coarse
# step: at 0.1 gal per pulse one reading a minute could only show 0, 0.1, 0.2 gal/min).
FLOW_WINDOW_S: Final = 300.0


class PulseKind(StrEnum):
    """What is connected to a pulse input ("nothing" is not stored)."""

    WATER = "water"
    GAS = "gas"
    ELECTRICITY = "electricity"
    OTHER = "other"


UNITS: Final[tuple[str, ...]] = (
    UnitOfVolume.GALLONS,
    UnitOfVolume.CUBIC_FEET,
    UnitOfVolume.LITERS,
    UnitOfVolume.CUBIC_METERS,
    UnitOfEnergy.WATT_HOUR,
    UnitOfEnergy.KILO_WATT_HOUR,
)
VOLUME_UNITS: Final = frozenset(UNITS[:4])
# The units each kind takes: what Home Assistant's water/gas/energy device classes and the
# Energy dashboard accept (gas is not measured in gallons there).
KIND_UNITS: Final[Mapping[PulseKind, tuple[str, ...]]] = {
    PulseKind.WATER: UNITS[:4],
    PulseKind.GAS: (UnitOfVolume.CUBIC_FEET, UnitOfVolume.LITERS, UnitOfVolume.CUBIC_METERS),
    PulseKind.ELECTRICITY: UNITS[4:],
    PulseKind.OTHER: UNITS,
}
_DEVICE_CLASS: Final = {
    PulseKind.WATER: SensorDeviceClass.WATER,
    PulseKind.GAS: SensorDeviceClass.GAS,
    PulseKind.ELECTRICITY: SensorDeviceClass.ENERGY,
}
# Flow-rate unit and its factor from (unit per second) for each total unit.
_FLOW_UNITS: Final[Mapping[str, tuple[str, float]]] = {
    UnitOfVolume.GALLONS: (UnitOfVolumeFlowRate.GALLONS_PER_MINUTE, 60.0),
    UnitOfVolume.CUBIC_FEET: (UnitOfVolumeFlowRate.CUBIC_FEET_PER_MINUTE, 60.0),
    UnitOfVolume.LITERS: (UnitOfVolumeFlowRate.LITERS_PER_MINUTE, 60.0),
    UnitOfVolume.CUBIC_METERS: (UnitOfVolumeFlowRate.CUBIC_METERS_PER_HOUR, 3600.0),
    UnitOfEnergy.WATT_HOUR: (UnitOfPower.WATT, 3600.0),
    UnitOfEnergy.KILO_WATT_HOUR: (UnitOfPower.WATT, 3_600_000.0),
}
# The unique id of a pulse input's entity (not "pulse_count_n", the bare count).
_UNIQUE_ID: Final = re.compile(r"_\d{12}_pulse_(?:water|gas|electricity|other)(?:_flow)?_\d$")


@dataclass(frozen=True, slots=True)
class PulseInput:
    """One configured pulse input of one meter."""

    address: str
    number: int  # 1..3
    kind: PulseKind
    per_pulse: float  # in ``unit``, per count of Pulse_Cnt_n
    unit: str

    @property
    def field(self) -> str:
        """The meter's counter of this input."""
        return f"Pulse_Cnt_{self.number}"

    def amount(self, count: float) -> float:
        """A count in the configured unit (rounded past float noise)."""
        return round(count * self.per_pulse, 6)

    @property
    def precision(self) -> int:
        """Decimals worth showing: those of the amount per pulse (at most 3)."""
        exponent = Decimal(repr(self.per_pulse)).normalize().as_tuple().exponent
        return min(3, max(0, -exponent)) if isinstance(exponent, int) else 3

    @property
    def device_class(self) -> SensorDeviceClass | None:
        """The total's device class (none for "other")."""
        return _DEVICE_CLASS.get(self.kind)

    @property
    def flow_unit(self) -> str:
        """The flow rate's unit ("<unit>/h" for "other")."""
        if self.kind is PulseKind.OTHER:
            return f"{self.unit}/h"
        return _FLOW_UNITS[self.unit][0]

    def flow(self, counts: float, seconds: float) -> float:
        """The flow rate of ``counts`` pulses in ``seconds`` in :attr:`flow_unit`."""
        factor = 3600.0 if self.kind is PulseKind.OTHER else _FLOW_UNITS[self.unit][1]
        return round(counts * self.per_pulse / seconds * factor, 6)

    def as_option(self) -> dict[str, Any]:
        """The stored form."""
        return {"kind": str(self.kind), "per_pulse": self.per_pulse, "unit": self.unit}


def unit_error(kind: PulseKind, unit: str) -> str | None:
    """The form error for a unit that does not fit the kind, None when it does."""
    if unit in KIND_UNITS[kind]:
        return None
    if kind is PulseKind.ELECTRICITY:
        return "unit_not_energy"
    return "unit_not_gas_volume" if kind is PulseKind.GAS else "unit_not_volume"


def parse_input(address: str, number: int, raw: Any) -> PulseInput | None:
    """One stored input, None when it is junk (unknown kind or unit, not a positive amount)."""
    if not isinstance(raw, Mapping):
        return None
    try:
        kind = PulseKind(str(raw.get("kind")))
        per_pulse = float(raw.get("per_pulse"))  # type: ignore[arg-type]
    except TypeError, ValueError:
        return None
    unit = raw.get("unit")
    if not isinstance(unit, str) or unit_error(kind, unit) or not math.isfinite(per_pulse):
        return None
    if per_pulse <= 0:
        return None
    return PulseInput(address, number, kind, per_pulse, unit)


def parse_pulse_inputs(options: Mapping[str, Any]) -> dict[str, dict[int, PulseInput]]:
    """The configured inputs by meter and input number, junk left out."""
    raw = options.get(CONF_PULSE_INPUTS)
    result: dict[str, dict[int, PulseInput]] = {}
    if not isinstance(raw, Mapping):
        return result
    for key, inputs in raw.items():
        try:
            address = normalize_address(key)
        except ValueError:
            continue
        if not isinstance(inputs, Mapping):
            continue
        for n_key, value in inputs.items():
            number = int(n_key) if str(n_key).isdigit() else 0
            if number in INPUTS and (parsed := parse_input(address, number, value)):
                result.setdefault(address, {})[number] = parsed
    return result


def configured(options: Mapping[str, Any]) -> list[PulseInput]:
    """Every configured input, by meter and number."""
    return [
        pulse
        for _, inputs in sorted(parse_pulse_inputs(options).items())
        for _, pulse in sorted(inputs.items())
    ]


# --- entities ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PulseTotalDescription(EkmSensorEntityDescription):
    """The total of one configured input (an EkmSensor: monotonic, restored)."""

    pulse: PulseInput


@dataclass(frozen=True, kw_only=True)
class PulseFlowDescription(SensorEntityDescription):
    """The flow rate of one configured input."""

    pulse: PulseInput


def _total_description(pulse: PulseInput) -> PulseTotalDescription:
    n = pulse.number

    def value(reading: MeterReading) -> float | None:
        count = reading.number(pulse.field)
        return None if count is None else pulse.amount(count)

    def attrs(reading: MeterReading) -> Mapping[str, Any]:
        return {
            "pulse_count": reading.number(pulse.field),
            "per_pulse": pulse.per_pulse,
            "pulse_ratio": reading.number(f"Pulse_Ratio_{n}"),
        }

    return PulseTotalDescription(
        key=f"pulse_{pulse.kind}_{n}",
        translation_key=f"pulse_{pulse.kind}",
        translation_placeholders={"input": str(n)},
        fields=(pulse.field,),
        value_fn=value,
        attrs_fn=attrs,
        device_class=pulse.device_class,
        native_unit_of_measurement=pulse.unit,
        # Shown as configured, not in the unit system's unit (gal stays gal in metric).
        suggested_unit_of_measurement=pulse.unit,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=pulse.precision,
        monotonic=True,
        pulse=pulse,
    )


def _flow_description(pulse: PulseInput) -> PulseFlowDescription:
    device_class = {
        PulseKind.WATER: SensorDeviceClass.VOLUME_FLOW_RATE,
        PulseKind.GAS: SensorDeviceClass.VOLUME_FLOW_RATE,
        PulseKind.ELECTRICITY: SensorDeviceClass.POWER,
    }.get(pulse.kind)
    return PulseFlowDescription(
        key=f"pulse_{pulse.kind}_flow_{pulse.number}",
        translation_key=f"pulse_{pulse.kind}_flow",
        translation_placeholders={"input": str(pulse.number)},
        device_class=device_class,
        native_unit_of_measurement=pulse.flow_unit,
        suggested_unit_of_measurement=pulse.flow_unit,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0 if pulse.kind is PulseKind.ELECTRICITY else 2,
        pulse=pulse,
    )


class EkmPulseTotalSensor(EkmSensor):
    """How much has flowed through the meter on one input (Pulse_Cnt_n x amount)."""

    entity_description: PulseTotalDescription

    async def async_added_to_hass(self) -> None:
        """Restore the total, unless it was counted with another amount or unit."""
        await super().async_added_to_hass()
        last = await self.async_get_last_state()
        pulse = self.entity_description.pulse
        if last is None or (
            last.attributes.get("per_pulse", pulse.per_pulse) == pulse.per_pulse
            and last.attributes.get("unit_of_measurement", pulse.unit) == pulse.unit
        ):
            return
        # The owner changed the amount per pulse: a new scale, not a smaller total.
        self._highest = None
        self._lower_reads.clear()
        self._update_from_reading()
        self.async_write_ha_state()


class EkmPulseFlowSensor(EkmEntity, SensorEntity):
    """The flow rate (or power) on one input, from the count's rise over recent readings."""

    entity_description: PulseFlowDescription

    def __init__(
        self, coordinator: EkmCoordinator, address: str, description: PulseFlowDescription
    ) -> None:
        super().__init__(coordinator, address, description)
        self._samples: deque[tuple[int, float]] = deque()  # (timestamp ms, count)
        self._update_from_reading()

    def _update_from_reading(self) -> None:
        reading = self.reading
        pulse = self.entity_description.pulse
        count = reading.number(pulse.field) if reading else None
        if reading is None or count is None:
            return  # unavailable, or nothing new: the window stays as it is
        stamp = reading.timestamp_ms
        samples = self._samples
        if samples and stamp <= samples[-1][0]:
            return  # the same (or an older) reading
        gap_ms = self.coordinator.stale_after.total_seconds() * 1000
        if samples and (stamp - samples[-1][0] > gap_ms or count < samples[-1][1]):
            samples.clear()  # after a gap or a reset the old counts say nothing
        samples.append((stamp, count))
        while len(samples) > 2 and stamp - samples[1][0] >= FLOW_WINDOW_S * 1000:
            samples.popleft()  # keep the window, and the reading just before it

    @property
    def native_value(self) -> float | None:
        """The average over the window; unknown until two readings (and after a gap)."""
        if len(self._samples) < 2:
            return None
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return self.entity_description.pulse.flow(c1 - c0, (t1 - t0) / 1000)


type PulseDescription = PulseTotalDescription | PulseFlowDescription


def _present(description: PulseDescription, reading: MeterReading) -> bool:
    pulse = description.pulse
    return reading.address == pulse.address and pulse.field in reading.values


def _factory(coordinator: EkmCoordinator, address: str, description: PulseDescription) -> Entity:
    if isinstance(description, PulseTotalDescription):
        return EkmPulseTotalSensor(coordinator, address, description)
    return EkmPulseFlowSensor(coordinator, address, description)


@callback
def async_add_pulse_entities(
    entry: EkmConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """A total and a flow rate per configured input of a meter reporting its count.

    Entities of inputs no longer configured (or now something else) are removed.
    """
    pulses = configured(entry.options)
    descriptions: list[PulseDescription] = [
        d for pulse in pulses for d in (_total_description(pulse), _flow_description(pulse))
    ]
    wanted = {f"{entry.unique_id}_{d.pulse.address}_{d.key}" for d in descriptions}
    registry = er.async_get(entry.runtime_data.coordinator.hass)
    for old in er.async_entries_for_config_entry(registry, entry.entry_id):
        if (
            old.domain == "sensor"
            and _UNIQUE_ID.search(old.unique_id)
            and old.unique_id not in wanted
        ):
            registry.async_remove(old.entity_id)
    if descriptions:
        async_add_meter_entities(entry, async_add_entities, descriptions, _present, _factory)
