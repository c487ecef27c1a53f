"""Sensors for EKM meters, generated from the pyekm field catalog."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfRatio,
    UnitOfReactiveEnergy,
    UnitOfReactivePower,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from . import EkmConfigEntry
from .const import CONF_ENTRY_TYPE, ENTRY_RS485
from .coordinator import EkmCoordinator
from .entity import EkmEntity, async_add_meter_entities
from .pyekm import FIELDS, MeterReading
from .pyekm.catalog import ENUMS, power_factor

PARALLEL_UPDATES = 0

type ValueFn = Callable[[MeterReading], StateType | datetime]


@dataclass(frozen=True, kw_only=True)
class EkmSensorEntityDescription(SensorEntityDescription):
    """How one sensor reads its value from a reading."""

    fields: tuple[str, ...]  # the first present field is used (others are fallbacks)
    value_fn: ValueFn | None = None  # default: the first present field's value
    # Lifetime registers: a decrease (to 0 or otherwise) is bad data: unavailable.
    monotonic: bool = False
    attrs_fn: Callable[[MeterReading], Mapping[str, Any] | None] | None = None

    def present(self, reading: MeterReading) -> bool:
        """Whether the meter reports what this sensor shows."""
        return any(name in reading.values for name in self.fields)

    def value(self, reading: MeterReading) -> StateType | datetime:
        """Return the value from a reading (None when the field is missing)."""
        if self.value_fn is not None:
            return self.value_fn(reading)
        for name in self.fields:
            if name in reading.values:
                return reading.values[name]
        return None


def _pf_value(name: str) -> ValueFn:
    def value(reading: MeterReading) -> float | None:
        code = reading.number(name)
        return None if code is None else round(power_factor(code)[0] * 100, 1)

    return value


def _pf_attrs(name: str) -> Callable[[MeterReading], Mapping[str, Any] | None]:
    def attrs(reading: MeterReading) -> Mapping[str, Any] | None:
        code = reading.number(name)
        return None if code is None else {"power_factor_type": power_factor(code)[1]}

    return attrs


def _enum_value(name: str) -> ValueFn:
    options = ENUMS[name]

    def value(reading: MeterReading) -> str | None:
        code = reading.number(name)
        return None if code is None else options.get(int(code))

    return value


def _energy(
    key: str, field: str, *, enabled: bool = True, monotonic: bool = True, **kw: Any
) -> EkmSensorEntityDescription:
    kw.setdefault("state_class", SensorStateClass.TOTAL_INCREASING)
    return EkmSensorEntityDescription(
        key=key,
        translation_key=key,
        fields=(field,),
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        entity_registry_enabled_default=enabled,
        monotonic=monotonic,
        **kw,
    )


def _enum(key: str, field: str, *, enabled: bool = False) -> EkmSensorEntityDescription:
    return EkmSensorEntityDescription(
        key=key,
        translation_key=key,
        fields=(field,),
        value_fn=_enum_value(field),
        device_class=SensorDeviceClass.ENUM,
        options=list(ENUMS[field].values()),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=enabled,
    )


def _per(
    base: EkmSensorEntityDescription,
    numbers: Iterable[int],
    fields: Callable[[int], tuple[str, ...]],
    *,
    placeholder: str = "line",
    enabled: Callable[[int], bool] = lambda n: False,
    value_fn: Callable[[int], ValueFn] | None = None,
    attrs_fn: Callable[[int], Callable[[MeterReading], Mapping[str, Any] | None]] | None = None,
) -> list[EkmSensorEntityDescription]:
    """Per-line (or per-tariff, per-input) copies of one description."""
    return [
        replace(
            base,
            key=f"{base.key}_{n}",
            fields=fields(n),
            translation_placeholders={placeholder: str(n)},
            entity_registry_enabled_default=enabled(n),
            value_fn=value_fn(n) if value_fn else base.value_fn,
            attrs_fn=attrs_fn(n) if attrs_fn else base.attrs_fn,
        )
        for n in numbers
    ]


LINES = (1, 2, 3)
FIRST_LINE_ONLY: Callable[[int], bool] = lambda n: n == 1  # noqa: E731

SENSORS: tuple[EkmSensorEntityDescription, ...] = (
    # Energy: the Energy dashboard's grid import/export and friends.
    _energy("energy_total", "kWh_Tot"),
    _energy("energy_import", "Calc_Fwd_kWh_Tot"),
    _energy("energy_export", "Rev_kWh_Tot"),
    _energy("energy_net", "Calc_Net_kWh_Tot", monotonic=False, state_class=SensorStateClass.TOTAL),
    _energy("energy_resettable", "kWh_Rst", enabled=False, monotonic=False),
    _energy("energy_resettable_export", "Rev_kWh_Rst", enabled=False, monotonic=False),
    *_per(
        _energy("energy_tariff", "kWh_Tariff_1"),
        range(1, 5),
        lambda n: (f"kWh_Tariff_{n}",),
        placeholder="tariff",
    ),
    *_per(
        _energy("energy_export_tariff", "Rev_kWh_Tariff_1"),
        range(1, 5),
        lambda n: (f"Rev_kWh_Tariff_{n}",),
        placeholder="tariff",
    ),
    *_per(_energy("energy_line", "kWh_Ln_1"), LINES, lambda n: (f"kWh_Ln_{n}",)),
    *_per(_energy("energy_export_line", "Rev_kWh_Ln_1"), LINES, lambda n: (f"Rev_kWh_Ln_{n}",)),
    EkmSensorEntityDescription(
        key="reactive_energy",
        translation_key="reactive_energy",
        fields=("Reactive_Energy_Tot",),
        device_class=SensorDeviceClass.REACTIVE_ENERGY,
        native_unit_of_measurement=UnitOfReactiveEnergy.KILO_VOLT_AMPERE_REACTIVE_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        monotonic=True,
    ),
    # Power: signed by State_Watts_Dir where the meter reports it (v4/v5).
    EkmSensorEntityDescription(
        key="power",
        translation_key="power",
        fields=("Net_Calc_Watts_Tot", "RMS_Watts_Tot"),
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
    ),
    *_per(
        EkmSensorEntityDescription(
            key="power_line",
            translation_key="power_line",
            fields=(),
            device_class=SensorDeviceClass.POWER,
            native_unit_of_measurement=UnitOfPower.WATT,
            state_class=SensorStateClass.MEASUREMENT,
        ),
        LINES,
        lambda n: (f"Net_Calc_Watts_Ln_{n}", f"RMS_Watts_Ln_{n}"),
    ),
    EkmSensorEntityDescription(
        key="max_demand",
        translation_key="max_demand",
        fields=("RMS_Watts_Max_Demand",),
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
    ),
    EkmSensorEntityDescription(
        key="reactive_power",
        translation_key="reactive_power",
        fields=("Reactive_Pwr_Tot",),
        device_class=SensorDeviceClass.REACTIVE_POWER,
        native_unit_of_measurement=UnitOfReactivePower.VOLT_AMPERE_REACTIVE,
        state_class=SensorStateClass.MEASUREMENT,
    ),
    *_per(
        EkmSensorEntityDescription(
            key="reactive_power_line",
            translation_key="reactive_power_line",
            fields=(),
            device_class=SensorDeviceClass.REACTIVE_POWER,
            native_unit_of_measurement=UnitOfReactivePower.VOLT_AMPERE_REACTIVE,
            state_class=SensorStateClass.MEASUREMENT,
        ),
        LINES,
        lambda n: (f"Reactive_Pwr_Ln_{n}",),
    ),
    *_per(
        EkmSensorEntityDescription(
            key="voltage_line",
            translation_key="voltage_line",
            fields=(),
            device_class=SensorDeviceClass.VOLTAGE,
            native_unit_of_measurement=UnitOfElectricPotential.VOLT,
            state_class=SensorStateClass.MEASUREMENT,
            suggested_display_precision=1,
        ),
        LINES,
        lambda n: (f"RMS_Volts_Ln_{n}",),
        enabled=FIRST_LINE_ONLY,
    ),
    *_per(
        EkmSensorEntityDescription(
            key="current_line",
            translation_key="current_line",
            fields=(),
            device_class=SensorDeviceClass.CURRENT,
            native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
            state_class=SensorStateClass.MEASUREMENT,
            suggested_display_precision=1,
        ),
        LINES,
        lambda n: (f"Amps_Ln_{n}",),
        enabled=FIRST_LINE_ONLY,
    ),
    *_per(
        EkmSensorEntityDescription(
            key="power_factor_line",
            translation_key="power_factor_line",
            fields=(),
            device_class=SensorDeviceClass.POWER_FACTOR,
            native_unit_of_measurement=UnitOfRatio.PERCENTAGE,
            state_class=SensorStateClass.MEASUREMENT,
        ),
        LINES,
        lambda n: (f"Power_Factor_Ln_{n}",),
        enabled=FIRST_LINE_ONLY,
        value_fn=lambda n: _pf_value(f"Power_Factor_Ln_{n}"),
        attrs_fn=lambda n: _pf_attrs(f"Power_Factor_Ln_{n}"),
    ),
    EkmSensorEntityDescription(
        key="frequency",
        translation_key="frequency",
        fields=("Line_Freq",),
        device_class=SensorDeviceClass.FREQUENCY,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
    ),
    *_per(
        EkmSensorEntityDescription(
            key="pulse_count",
            translation_key="pulse_count",
            fields=(),
            state_class=SensorStateClass.TOTAL_INCREASING,
            monotonic=True,
        ),
        LINES,
        lambda n: (f"Pulse_Cnt_{n}",),
        placeholder="input",
    ),
    # Settings and state, for diagnostics.
    # Settings are disabled by default: Home Assistant allows 10,000 enabled entities
    # per config entry, and big accounts need that room for measurements.
    EkmSensorEntityDescription(
        key="ct_ratio",
        translation_key="ct_ratio",
        fields=("CT_Ratio",),
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    ),
    EkmSensorEntityDescription(
        key="pulse_output_ratio",
        translation_key="pulse_output_ratio",
        fields=("CF_Ratio",),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    ),
    *_per(
        EkmSensorEntityDescription(
            key="pulse_input_ratio",
            translation_key="pulse_input_ratio",
            fields=(),
            entity_category=EntityCategory.DIAGNOSTIC,
        ),
        LINES,
        lambda n: (f"Pulse_Ratio_{n}",),
        placeholder="input",
    ),
    _enum("max_demand_period", "Max_Demand_Period"),
    _enum("max_demand_auto_reset", "Max_Demand_Rst"),
    _enum("power_direction", "State_Watts_Dir"),
    _enum("output_state", "State_Out"),
    _enum("input_state", "State_Inputs"),
    EkmSensorEntityDescription(
        key="firmware",
        translation_key="firmware",
        fields=("Firmware",),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,  # also on the device card
    ),
    EkmSensorEntityDescription(
        key="meter_time",
        translation_key="meter_time",
        fields=("Meter_Time",),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    ),
    EkmSensorEntityDescription(
        key="good_reads_ratio",
        translation_key="good_reads_ratio",
        fields=("Good_Reads_Ratio",),
        native_unit_of_measurement=UnitOfRatio.PERCENTAGE,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    ),
    EkmSensorEntityDescription(
        key="last_read",
        translation_key="last_read",
        fields=("Time_Stamp_UTC_ms",),
        value_fn=lambda reading: reading.timestamp,
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
    ),
)

# An RS-485 bus is read every few seconds: a per-read timestamp would flood the logbook
# and the recorder there, so it starts disabled (the Reporting sensor shows liveness).
BUS_SENSORS: tuple[EkmSensorEntityDescription, ...] = tuple(
    replace(d, entity_registry_enabled_default=False) if d.key == "last_read" else d
    for d in SENSORS
)

# Every description reads fields the catalog knows (checked once, at import).
assert all(name in FIELDS for d in SENSORS for name in d.fields), "unknown field"


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EkmConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add sensors for the fields each meter reports, now and as meters appear."""
    async_add_meter_entities(
        entry,
        async_add_entities,
        BUS_SENSORS if entry.data.get(CONF_ENTRY_TYPE) == ENTRY_RS485 else SENSORS,
        EkmSensorEntityDescription.present,
        EkmSensor,
    )


class EkmSensor(EkmEntity, RestoreSensor, SensorEntity):
    """One value of one meter."""

    entity_description: EkmSensorEntityDescription

    def __init__(
        self,
        coordinator: EkmCoordinator,
        address: str,
        description: EkmSensorEntityDescription,
    ) -> None:
        super().__init__(coordinator, address, description)
        self._highest: float | None = None  # for monotonic registers
        self._valid = False
        self._update_from_reading()

    async def async_added_to_hass(self) -> None:
        """Remember the last total across restarts so it can never go backwards."""
        await super().async_added_to_hass()
        last = (
            await self.async_get_last_sensor_data() if self.entity_description.monotonic else None
        )
        if last is not None and isinstance(last.native_value, int | float):
            self._highest = max(self._highest or 0, float(last.native_value))
            self._update_from_reading()

    def _update_from_reading(self) -> None:
        reading = self.reading
        value = self.entity_description.value(reading) if reading else None
        self._valid = value is not None
        if self.entity_description.monotonic and isinstance(value, int | float):
            if self._highest is not None and value < self._highest:
                self._valid = False  # bad data (a glitch to 0, say): never go backwards
            else:
                self._highest = float(value)
        self._attr_native_value = value if self._valid else None
        attrs_fn = self.entity_description.attrs_fn
        attrs = attrs_fn(reading) if attrs_fn and reading and self._valid else None
        self._attr_extra_state_attributes = dict(attrs) if attrs else {}

    @property
    def available(self) -> bool:
        """Unavailable, not 0 or a smaller total, when the value cannot be trusted."""
        return super().available and self._valid
