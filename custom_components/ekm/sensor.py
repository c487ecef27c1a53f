"""Sensors for EKM meters, generated from the pyekm field catalog."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    PERCENTAGE,
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
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity
from homeassistant.util import dt as dt_util

from . import EkmConfigEntry
from .const import DOMAIN
from .entity import async_add_meter_entities
from .history import EkmHistoryCoordinator, MeterHistory
from .meter_sensor import EkmSensor, EkmSensorEntityDescription, ValueFn
from .pulse import async_add_pulse_entities
from .pyekm import FIELDS, MeterReading
from .pyekm.catalog import ENUMS, display_precision, power_factor

PARALLEL_UPDATES = 0


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


def _with_precision(
    *descriptions: EkmSensorEntityDescription,
) -> tuple[EkmSensorEntityDescription, ...]:
    """The descriptions with their fields' display precision, from the catalog (one place).

    Every transport shares these descriptions, so a register shows the same decimals
    from the cloud and from RS-485 (the values themselves come with different ones).
    """
    out = []
    for description in descriptions:
        precisions = {display_precision(name) for name in description.fields}
        assert len(precisions) == 1, f"{description.key}: fields of different precision"
        out.append(replace(description, suggested_display_precision=precisions.pop()))
    return tuple(out)


LINES = (1, 2, 3)
FIRST_LINE_ONLY: Callable[[int], bool] = lambda n: n == 1  # noqa: E731

SENSORS: tuple[EkmSensorEntityDescription, ...] = _with_precision(
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
        # A timestamp changes with every read, and the logbook records every change of
        # a sensor without a unit or state class (7,200 entries a day for five meters).
        # The Reporting binary sensor's last_reading attribute shows it instead.
        entity_registry_enabled_default=False,
    ),
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
        SENSORS,
        EkmSensorEntityDescription.present,
        EkmSensor,
    )
    if (history := entry.runtime_data.history) is not None:
        _add_history_sensors(entry, history, async_add_entities)
    async_add_pulse_entities(entry, async_add_entities)


# The import's progress (a number with a unit, so the logbook leaves it out: a timestamp
# "imported until" state made an Activity entry per imported chunk and then every hour).
HISTORY_SENSOR = SensorEntityDescription(
    key="history_import",
    translation_key="history_import",
    native_unit_of_measurement=PERCENTAGE,
    state_class=SensorStateClass.MEASUREMENT,
    suggested_display_precision=0,
    entity_category=EntityCategory.DIAGNOSTIC,
)
# The sensor it replaces (its registry entry is removed, nothing else had it).
OLD_HISTORY_KEY = "history_imported_until"


@callback
def _add_history_sensors(
    entry: EkmConfigEntry,
    history: EkmHistoryCoordinator,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """A 'history import' sensor per meter with history, as meters appear."""
    known: set[str] = set()
    registry = er.async_get(history.hass)

    @callback
    def _add_new() -> None:
        new = [a for a in history.data if a not in known]
        known.update(new)
        for address in new:
            old = registry.async_get_entity_id(
                "sensor", DOMAIN, f"{entry.unique_id}_{address}_{OLD_HISTORY_KEY}"
            )
            if old is not None:
                registry.async_remove(old)
        if new:
            async_add_entities(EkmHistorySensor(history, a) for a in new)

    _add_new()
    entry.async_on_unload(history.async_add_listener(_add_new))


class EkmHistorySensor(CoordinatorEntity[EkmHistoryCoordinator], SensorEntity):
    """How far the meter's history has been imported into long-term statistics."""

    _attr_has_entity_name = True
    entity_description = HISTORY_SENSOR

    def __init__(self, coordinator: EkmHistoryCoordinator, address: str) -> None:
        super().__init__(coordinator)
        self.address = address
        self._attr_unique_id = (
            f"{coordinator.config_entry.unique_id}_{address}_{HISTORY_SENSOR.key}"
        )
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, address)})
        self._shown: MeterHistory | None = None

    @callback
    def _handle_coordinator_update(self) -> None:
        """Write the state only when this meter's import moved.

        Progress is published per chunk of one meter: the other meters' sensors have
        nothing new then (with 100 meters that was 100 writes per chunk).
        """
        meter = self.coordinator.data.get(self.address)
        if meter is not None and meter == self._shown:
            return
        self._shown = meter
        self.async_write_ha_state()

    @property
    def available(self) -> bool:
        """Available while the meter has history to import (a failed run keeps it)."""
        return self.address in self.coordinator.data

    @property
    def native_value(self) -> float | None:
        """How much of the meter's history is in the statistics, 0-100 %."""
        meter = self.coordinator.data.get(self.address)
        return meter.progress(int(dt_util.utcnow().timestamp() * 1000)) if meter else None

    @property
    def extra_state_attributes(self) -> Mapping[str, Any]:
        """The end of the newest imported hour and where the meter's history starts."""
        meter = self.coordinator.data.get(self.address)
        if meter is None:
            return {}
        until = meter.imported_until
        return {
            "imported_until": until.isoformat() if until else None,
            "history_start": (
                datetime.fromtimestamp(meter.started_ms / 1000, UTC).isoformat()
                if meter.started_ms is not None
                else None
            ),
        }
