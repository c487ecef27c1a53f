"""The EKM field catalog: one entry per EKM field name, shared by every transport.

A field's *kind* says what it measures, its *unit* what the normalized number is in,
its *scale* how RS-485 turns the fixed-width ASCII digits into that number, and its
*value_type* how the cloud's numeric strings (or MQTT numbers) are converted. Units are
plain strings so that the library stays free of Home Assistant.

Facts tagged [INF] in ``shared/docs`` (for example the unit of ``Reactive_Energy_Tot``)
are stated here once; change them here and every transport follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
import math
from typing import Final

type Value = float | int | str


class Kind(StrEnum):
    """What a field measures."""

    ENERGY = "energy"  # cumulative kWh register
    REACTIVE_ENERGY = "reactive_energy"  # cumulative kVARh register
    POWER = "power"  # W, magnitude unless signed
    REACTIVE_POWER = "reactive_power"  # VAR
    VOLTAGE = "voltage"
    CURRENT = "current"
    POWER_FACTOR = "power_factor"  # EKM PF code 0..200 (100 = unity)
    COS_THETA = "cos_theta"  # "0.99 L" string form of the power factor
    FREQUENCY = "frequency"
    PULSE_COUNT = "pulse_count"  # cumulative pulse-input count
    ENUM = "enum"  # coded state, see ENUMS
    SETTING = "setting"  # a meter setting an owner can change (ratios)
    DIAGNOSTIC = "diagnostic"  # firmware, status codes, read statistics
    METADATA = "metadata"  # per-read bookkeeping (Good, Date, Time_Stamp_UTC_ms)


class Scale(StrEnum):
    """How RS-485 digits become the normalized number."""

    ONE = "one"  # integer as sent
    TENTH = "tenth"  # ÷10
    HUNDREDTH = "hundredth"  # ÷100
    KWH = "kwh"  # v3: ÷10; v4/v5: ÷10**kWh_Scale (from request A)
    TEXT = "text"  # kept as a string


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    """What pyekm knows about one EKM field."""

    name: str
    kind: Kind
    unit: str | None = None
    scale: Scale = Scale.ONE
    value_type: type[float] | type[int] | type[str] = float
    # Lifetime register: never legitimately decreases (a decrease is bad data).
    monotonic: bool = False
    # Cleared by a meter command (kWh_Rst): may fall to 0, never otherwise decrease.
    resettable: bool = False
    # Line number 1..3 for per-line fields, tariff number 1..4 for tariff registers.
    line: int | None = None
    tariff: int | None = None
    # Fields that are synthesized by pyekm from other fields (not sent by EKM).
    derived: bool = False
    protocols: frozenset[str] = field(default_factory=lambda: frozenset({"v3", "v4"}))


V3: Final = frozenset({"v3"})
V4: Final = frozenset({"v4"})  # v4 and v5 share the protocol
ALL: Final = frozenset({"v3", "v4"})

# Units (plain strings; the integration maps them to Home Assistant's enums).
KWH: Final = "kWh"
KVARH: Final = "kVARh"  # [INF] EKM calls Reactive_Energy_Tot "Total VAR"; unit unconfirmed
WATT: Final = "W"
VAR: Final = "VAR"
VOLT: Final = "V"
AMPERE: Final = "A"
HERTZ: Final = "Hz"
PERCENT: Final = "%"
MS: Final = "ms"


def _specs() -> dict[str, FieldSpec]:
    specs: list[FieldSpec] = [
        # Per-read metadata (every read carries Good, Date, Time, Time_Stamp_UTC_ms).
        FieldSpec(name="Good", kind=Kind.METADATA, value_type=int),
        FieldSpec(name="Date", kind=Kind.METADATA, value_type=str, scale=Scale.TEXT),
        FieldSpec(name="Time", kind=Kind.METADATA, value_type=str, scale=Scale.TEXT),
        FieldSpec(name="Time_Stamp_UTC_ms", kind=Kind.METADATA, value_type=int, unit=MS),
        FieldSpec(name="Good_Reads_Ratio", kind=Kind.DIAGNOSTIC, value_type=int, unit=PERCENT),
        FieldSpec(name="Reliability_Ratio", kind=Kind.DIAGNOSTIC, value_type=int, unit=PERCENT),
        FieldSpec(name="Read_Attempts", kind=Kind.DIAGNOSTIC, value_type=int),
        FieldSpec(name="Meter_Time", kind=Kind.DIAGNOSTIC, value_type=str, scale=Scale.TEXT),
        FieldSpec(name="Firmware", kind=Kind.DIAGNOSTIC, value_type=str, scale=Scale.TEXT),
        FieldSpec(name="Model", kind=Kind.DIAGNOSTIC, value_type=str, scale=Scale.TEXT),
        FieldSpec(name="Meter_Address", kind=Kind.METADATA, value_type=str, scale=Scale.TEXT),
        FieldSpec(name="Request_Type", kind=Kind.METADATA, value_type=str, scale=Scale.TEXT),
        FieldSpec(name="Meter_Status_Code", kind=Kind.DIAGNOSTIC, value_type=str, protocols=V3),
        FieldSpec(name="PERR.NR", kind=Kind.DIAGNOSTIC, value_type=str, scale=Scale.TEXT),
        FieldSpec(name="PERR.RXP", kind=Kind.DIAGNOSTIC, value_type=str, scale=Scale.TEXT),
        # Energy registers.
        FieldSpec(name="kWh_Tot", kind=Kind.ENERGY, unit=KWH, scale=Scale.KWH, monotonic=True),
        FieldSpec(name="Rev_kWh_Tot", kind=Kind.ENERGY, unit=KWH, scale=Scale.KWH, monotonic=True),
        FieldSpec(
            name="kWh_Rst",
            kind=Kind.ENERGY,
            unit=KWH,
            scale=Scale.KWH,
            resettable=True,
            protocols=V4,
        ),
        FieldSpec(
            name="Rev_kWh_Rst",
            kind=Kind.ENERGY,
            unit=KWH,
            scale=Scale.KWH,
            resettable=True,
            protocols=V4,
        ),
        FieldSpec(
            name="Reactive_Energy_Tot",
            kind=Kind.REACTIVE_ENERGY,
            unit=KVARH,
            scale=Scale.KWH,
            monotonic=True,
            protocols=V4,
        ),
        # Derived by pyekm (EKM glossary: Forward = Total - Reverse, Net = Total - 2 Reverse).
        FieldSpec(
            name="Calc_Fwd_kWh_Tot", kind=Kind.ENERGY, unit=KWH, monotonic=True, derived=True
        ),
        FieldSpec(name="Calc_Net_kWh_Tot", kind=Kind.ENERGY, unit=KWH, derived=True),
        # Instantaneous totals.
        FieldSpec(name="RMS_Watts_Tot", kind=Kind.POWER, unit=WATT, value_type=int),
        FieldSpec(
            name="Net_Calc_Watts_Tot",
            kind=Kind.POWER,
            unit=WATT,
            value_type=int,
            protocols=V4,
            derived=True,
        ),
        FieldSpec(name="RMS_Watts_Max_Demand", kind=Kind.POWER, unit=WATT, scale=Scale.TENTH),
        FieldSpec(
            name="Reactive_Pwr_Tot",
            kind=Kind.REACTIVE_POWER,
            unit=VAR,
            value_type=int,
            protocols=V4,
        ),
        FieldSpec(
            name="Line_Freq", kind=Kind.FREQUENCY, unit=HERTZ, scale=Scale.HUNDREDTH, protocols=V4
        ),
        # Settings and states.
        FieldSpec(name="CT_Ratio", kind=Kind.SETTING, unit=AMPERE, value_type=int),
        FieldSpec(name="CF_Ratio", kind=Kind.SETTING, value_type=int, protocols=V4),
        FieldSpec(name="Max_Demand_Period", kind=Kind.ENUM, value_type=int),
        FieldSpec(name="Max_Demand_Rst", kind=Kind.ENUM, value_type=int, protocols=V4),
        FieldSpec(name="kWh_Scale", kind=Kind.DIAGNOSTIC, value_type=int),
        FieldSpec(name="State_Watts_Dir", kind=Kind.ENUM, value_type=int, protocols=V4),
        FieldSpec(name="State_Out", kind=Kind.ENUM, value_type=int, protocols=V4),
        FieldSpec(name="State_Inputs", kind=Kind.ENUM, value_type=int),
    ]
    for status in ("A", "B", "C"):
        specs.append(
            FieldSpec(
                name=f"Meter_Status_Code_{status}",
                kind=Kind.DIAGNOSTIC,
                value_type=str,
                scale=Scale.TEXT,
                protocols=V4,
            )
        )
    for t in range(1, 5):
        specs += [
            FieldSpec(
                name=f"kWh_Tariff_{t}",
                kind=Kind.ENERGY,
                unit=KWH,
                scale=Scale.KWH,
                monotonic=True,
                tariff=t,
            ),
            FieldSpec(
                name=f"Rev_kWh_Tariff_{t}",
                kind=Kind.ENERGY,
                unit=KWH,
                scale=Scale.KWH,
                monotonic=True,
                tariff=t,
            ),
        ]
    for n in range(1, 4):
        specs += [
            FieldSpec(
                name=f"kWh_Ln_{n}",
                kind=Kind.ENERGY,
                unit=KWH,
                scale=Scale.KWH,
                monotonic=True,
                line=n,
                protocols=V4,
            ),
            FieldSpec(
                name=f"Rev_kWh_Ln_{n}",
                kind=Kind.ENERGY,
                unit=KWH,
                scale=Scale.KWH,
                monotonic=True,
                line=n,
                protocols=V4,
            ),
            FieldSpec(
                name=f"RMS_Volts_Ln_{n}", kind=Kind.VOLTAGE, unit=VOLT, scale=Scale.TENTH, line=n
            ),
            FieldSpec(
                name=f"Amps_Ln_{n}", kind=Kind.CURRENT, unit=AMPERE, scale=Scale.TENTH, line=n
            ),
            FieldSpec(name=f"RMS_Watts_Ln_{n}", kind=Kind.POWER, unit=WATT, value_type=int, line=n),
            FieldSpec(
                name=f"Net_Calc_Watts_Ln_{n}",
                kind=Kind.POWER,
                unit=WATT,
                value_type=int,
                line=n,
                protocols=V4,
                derived=True,
            ),
            FieldSpec(name=f"Power_Factor_Ln_{n}", kind=Kind.POWER_FACTOR, value_type=int, line=n),
            FieldSpec(
                name=f"Cos_Theta_Ln_{n}",
                kind=Kind.COS_THETA,
                value_type=str,
                scale=Scale.TEXT,
                line=n,
            ),
            FieldSpec(
                name=f"Reactive_Pwr_Ln_{n}",
                kind=Kind.REACTIVE_POWER,
                unit=VAR,
                value_type=int,
                line=n,
                protocols=V4,
            ),
            FieldSpec(
                name=f"Pulse_Cnt_{n}", kind=Kind.PULSE_COUNT, value_type=int, monotonic=True, line=n
            ),
            FieldSpec(name=f"Pulse_Ratio_{n}", kind=Kind.SETTING, value_type=int, line=n),
        ]
    return {spec.name: spec for spec in specs}


FIELDS: Final[Mapping[str, FieldSpec]] = _specs()

# Decimals a display shows of each kind of value (Home Assistant's suggested display
# precision), so that a register looks the same on every transport: the cloud sends what
# EKM formats (kVARh with two decimals) and RS-485 what the meter's scale gives (one).
# Text, codes (enums) and per-read bookkeeping have none.
DISPLAY_PRECISION: Final[Mapping[Kind, int]] = {
    Kind.ENERGY: 2,
    Kind.REACTIVE_ENERGY: 2,
    Kind.POWER: 0,
    Kind.REACTIVE_POWER: 0,
    Kind.VOLTAGE: 1,
    Kind.CURRENT: 1,
    Kind.POWER_FACTOR: 0,  # shown in %: EKM's code has whole percents
    Kind.FREQUENCY: 2,
    Kind.PULSE_COUNT: 0,
    Kind.SETTING: 0,
    Kind.DIAGNOSTIC: 0,  # read ratios, counts
}


def display_precision(name: str) -> int | None:
    """The decimals to show of a field's value; None for text, codes and bookkeeping."""
    spec = FIELDS.get(name)
    if spec is None or spec.value_type is str:
        return None
    return DISPLAY_PRECISION.get(spec.kind)


# Enumerations (ekm-rs485.md §4.5; the cloud uses the same codes).
ENUMS: Final[Mapping[str, Mapping[int, str]]] = {
    "State_Watts_Dir": {
        1: "forward_forward_forward",
        2: "forward_forward_reverse",
        3: "forward_reverse_forward",
        4: "reverse_forward_forward",
        5: "forward_reverse_reverse",
        6: "reverse_forward_reverse",
        7: "reverse_reverse_forward",
        8: "reverse_reverse_reverse",
    },
    "State_Out": {1: "off_off", 2: "off_on", 3: "on_off", 4: "on_on"},
    "State_Inputs": {
        0: "high_high_high",
        1: "high_high_low",
        2: "high_low_high",
        3: "high_low_low",
        4: "low_high_high",
        5: "low_high_low",
        6: "low_low_high",
        7: "low_low_low",
    },
    "Max_Demand_Period": {1: "15_minutes", 2: "30_minutes", 3: "60_minutes"},
    "Max_Demand_Rst": {0: "off", 1: "monthly", 2: "weekly", 3: "daily", 4: "hourly"},
}

# Settings with fixed allowed values (ekm-rs485.md §4.5, [S] from ekmmeters).
CT_RATIOS: Final = (100, 200, 400, 600, 800, 1000, 1200, 1500, 2000, 3000, 4000, 5000)
PULSE_OUTPUT_RATIOS: Final = (1, 2, 4, 5, 8, 10, 16, 20, 25, 40, 50, 80, 100, 200, 400, 800, 1600)

# Model codes (hex on the wire, as a string in the cloud).
MODELS: Final[Mapping[str, str]] = {
    "1017": "Omnimeter I v.3",
    "1022": "Omnimeter II UL v.3",
    "1024": "Omnimeter Pulse v.4",
}


def model_name(code: str | None, protocol: str | None = None) -> str:
    """Human model name for a model code; falls back to the protocol generation."""
    if code and code.lower() in MODELS:
        return MODELS[code.lower()]
    if protocol == "v3":
        return "Omnimeter v.3"
    if protocol in ("v4", "v5"):
        return f"Omnimeter {protocol[0]}.{protocol[1:]}"
    return "Omnimeter"


# --- value conversion --------------------------------------------------------------------


def to_number(raw: object) -> float | None:
    """A finite float from a JSON number or numeric string, else None.

    Hot (every value of every summary row), so one type check and ``float()``, which
    already ignores surrounding white space and rejects empty text.
    """
    if raw.__class__ is bool or not isinstance(raw, int | float | str):
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def convert(name: str, raw: object) -> Value | None:
    """Convert one raw value (cloud string, MQTT number, ...) by the catalog.

    Unknown fields are kept when they are scalars (numbers become floats), so that
    diagnostics show everything EKM sent. Returns None for a value that cannot be used.
    """
    spec = FIELDS.get(name)
    if spec is None or spec.value_type is float:
        if spec is None and isinstance(raw, str):
            number = to_number(raw)
            return raw.strip() if number is None else number
        return to_number(raw)
    if spec.value_type is int:
        number = to_number(raw)
        if number is None:
            return None
        return int(number) if number.is_integer() else number
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    return None


# --- power factor --------------------------------------------------------------------------


def pf_code_from_cos_theta(text: str) -> int | None:
    """EKM's legacy integer PF code (0..200) from the meter's 'L099'/'C083'/' 100' form.

    Also accepts the gateway's '0.99 L' form.
    """
    text = text.strip()
    if not text:
        return None
    if " " in text:  # "0.99 L"
        number_text, _, suffix = text.partition(" ")
        number = to_number(number_text)
        if number is None:
            return None
        digits = round(number * 100)
        prefix = suffix.strip()[:1].upper()
    else:
        prefix = text[0].upper() if text[0].isalpha() else ""
        number = to_number(text[1:] if prefix else text)
        if number is None:
            return None
        digits = int(number)
    if prefix == "C":
        return 200 - digits
    if prefix == "L":
        return digits
    return 100


def power_factor(code: float) -> tuple[float, str | None]:
    """PF in 0..1 and 'lagging'/'leading'/None (unity or no load) from the EKM code."""
    if code < 100:
        return code / 100, "lagging"
    if code > 100:
        return (200 - code) / 100, "leading"
    return 1.0, None


def cos_theta_text(code: float) -> str:
    """The gateway's '0.99 L' text form of a PF code."""
    pf, kind = power_factor(code)
    suffix = {"lagging": "L", "leading": "C", None: ""}[kind]
    return f"{pf:.2f} {suffix}".rstrip()


# --- direction -------------------------------------------------------------------------------

_DIRECTIONS: Final[Mapping[int, str]] = {
    1: "FFF",
    2: "FFR",
    3: "FRF",
    4: "RFF",
    5: "FRR",
    6: "RFR",
    7: "RRF",
    8: "RRR",
}


def line_is_reverse(state_watts_dir: int, line: int) -> bool | None:
    """Whether line 1..3 flows in reverse, per State_Watts_Dir; None if unknown."""
    pattern = _DIRECTIONS.get(state_watts_dir)
    if pattern is None or not 1 <= line <= 3:
        return None
    return pattern[line - 1] == "R"


def relay_states(state_out: int) -> tuple[bool, bool] | None:
    """(relay 1 closed, relay 2 closed) from State_Out 1..4; None if unknown."""
    if state_out not in (1, 2, 3, 4):
        return None
    bits = state_out - 1
    return bool(bits & 0b10), bool(bits & 0b01)


def state_out_code(relay_1: bool, relay_2: bool) -> int:
    """State_Out code from the two relay states."""
    return 1 + (2 if relay_1 else 0) + (1 if relay_2 else 0)


# --- normalization -----------------------------------------------------------------------------


def normalize_values(raw: Mapping[str, object]) -> dict[str, Value]:
    """Convert a raw field mapping and add the fields every transport shares.

    Adds, where the inputs are present and the output is not:
    ``Power_Factor_Ln_n`` from ``Cos_Theta_Ln_n`` (and the reverse),
    ``Net_Calc_Watts_Ln_n``/``_Tot`` from ``RMS_Watts_Ln_n`` and ``State_Watts_Dir``,
    ``Calc_Fwd_kWh_Tot`` and ``Calc_Net_kWh_Tot`` from ``kWh_Tot`` and ``Rev_kWh_Tot``.
    """
    values: dict[str, Value] = {}
    for name, raw_value in raw.items():
        value = convert(name, raw_value)
        if value is not None:
            values[name] = value
    derive(values)
    return values


def derive(values: dict[str, Value]) -> None:
    """Fill in derived fields in place (see normalize_values)."""
    for n in range(1, 4):
        pf_key, cos_key = f"Power_Factor_Ln_{n}", f"Cos_Theta_Ln_{n}"
        cos = values.get(cos_key)
        pf = values.get(pf_key)
        if pf is None and isinstance(cos, str):
            code = pf_code_from_cos_theta(cos)
            if code is not None:
                values[pf_key] = code
        elif cos is None and isinstance(pf, int | float):
            values[cos_key] = cos_theta_text(pf)

    direction = values.get("State_Watts_Dir")
    if isinstance(direction, int) and direction in _DIRECTIONS:
        total = 0
        complete = True
        for n in range(1, 4):
            watts = values.get(f"RMS_Watts_Ln_{n}")
            if not isinstance(watts, int | float):
                complete = False
                continue
            signed = -int(watts) if line_is_reverse(direction, n) else int(watts)
            values.setdefault(f"Net_Calc_Watts_Ln_{n}", signed)
            total += signed
        if complete:
            values.setdefault("Net_Calc_Watts_Tot", total)

    tot, rev = values.get("kWh_Tot"), values.get("Rev_kWh_Tot")
    if isinstance(tot, int | float) and isinstance(rev, int | float):
        values.setdefault("Calc_Fwd_kWh_Tot", round(tot - rev, 6))
        values.setdefault("Calc_Net_kWh_Tot", round(tot - 2 * rev, 6))


def normalize_address(address: str | int) -> str:
    """The 12-digit, zero-padded meter address; raises ValueError if it is not one."""
    text = str(address).strip()
    if text.startswith("meter_"):
        text = text[len("meter_") :]
    if not text.isdigit() or not 1 <= len(text) <= 12:
        raise ValueError("A meter address is 1 to 12 digits")
    return text.zfill(12)
