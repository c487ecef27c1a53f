"""The simulated EKM world: meters, Push3 gateways, keys and a clock."""

# One Fleet is what every simulated transport presents: the cloud APIs (ekmsim.cloud and
# its Summary API, ekmsim.summary), the MQTT publisher and the virtual RS-485 meters.
# Meters are physical models: a daily load curve drives the power, solar meters export
# in daylight, PV production meters measure the panels' output (forward). Fleet.demo
# builds a consistent home from them (grid meter = house load - PV; sub-meters inside).
#
# Every lifetime register (kWh_Tot, Rev_kWh_Tot, per line, tariffs, kWh_Rst/Rev_kWh_Rst,
# Reactive_Energy_Tot, Pulse_Cnt_1..3) is a pure function of the time t (RegisterModel):
# the physics repeats every local day, so one day's cumulative table of 288 five-minute
# slots (midpoint rule) per set of physics parameters gives
#     register(t) = offset + whole local days x day total + slot table + linear in the slot,
# O(1) per evaluation, no history kept. The value at ``SimMeter.first_report`` is
# ``initial_kwh``; restarting the simulator at a later time gives higher totals, never
# lower ones, and the Realtime reads, the Summary API and the MQTT summaries all come
# from the same function. Events that change a register other than by energy flow
# (zero_resettable, replace_registers, a changed physics knob) start a new segment of the
# function at their time; earlier times keep their values.
#
# SimMeter.snapshot() returns *normalized* values (EKM field names, kWh as floats at the
# meter's resolution, volts in V, ...); each transport encodes them in its wire format.
#
# Control (ekmsim.control serves it over HTTP): API tokens (SimToken), the Trigger API's
# store (Fleet.triggers) and Settings API commands (SimCommand), which a gateway holds in
# its queue until they are ready and it is online, then applies (Fleet.apply_commands):
# SetRelay moves the meter's relay and the gateway reports that meter once at once
# (Fleet.report_now). Commands never touch the registers.

from __future__ import annotations

import array
import asyncio
import base64
import bisect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
import functools
import logging
import math
import random
import time
from typing import Any, Final
import uuid
import zlib
from zoneinfo import ZoneInfo

_LOGGER = logging.getLogger(__name__)

type Value = float | int | str
type Read = dict[str, Value]
type ReadBatch = list[tuple[SimMeter, Read]]
type Listener = Callable[[ReadBatch], None]

DEMO_ACCOUNT_KEY: Final = "MTAxMDoyMDIw"
DEMO_GATEWAY_MAC: Final = "4016fa0500cd"
DEMO_GATEWAY_KEY: Final = "NjUyNjk0MzY6KDkkPVtXLUpQZyFmaDBrYTlJ"
# The Demo Push3's LAN key (its local readMeter API, ekmsim.lan): lan_key(DEMO_GATEWAY_MAC).
DEMO_LAN_KEY: Final = "17f30fa7ee445c178b97"
DEMO_METER: Final = "000000010389"
# The demo meter's own key (a per-meter key, as a landlord gives each tenant one):
# meter_key(20010389, "Tenant-Key-10389"), the simulator's invention like the gateway keys.
DEMO_NAMES: Final = {
    "000000000099": "House (grid)",
    "000000015635": "Rooftop PV",
    "000000010388": "Sub-panel",
    "000000010389": "Water heater",
    "000300000001": "Workshop",
}  # Fleet.demo(named=True)
DEMO_METER_KEY: Final = "MjAwMTAzODk6VGVuYW50LUtleS0xMDM4OQ"
# The demo home (Fleet.demo): the grid connection, the PV production meter, a sub-panel
# and, on one of its circuits, the water heater (DEMO_METER).
DEMO_GARAGE_MAC: Final = "4016fa010226"
DEMO_GRID_METER: Final = "000000000099"
DEMO_SOLAR_METER: Final = "000000015635"
DEMO_SUBPANEL_METER: Final = "000000010388"
DEMO_WATER_HEATER_METER: Final = DEMO_METER
DEMO_THREE_PHASE_METER: Final = "000300000001"
# The demo account's API token (READ/WRITE, OWNER): the simulator's invention, as EKM
# publishes no sample token. Tokens are bearer secrets: never log them.
DEMO_API_TOKEN: Final = "ekmsim-api-token-7f3c9a2e5b1d4086"
HISTORY_LEN: Final = 1000  # EKM keeps the 1,000 latest reads per meter
# Registers are functions of the time since ORIGIN; a meter's default first report is
# ORIGIN plus up to FIRST_REPORT_SPREAD_S derived from its address (whole hours).
ORIGIN: Final = 1_672_531_200.0  # 2023-01-01T00:00:00Z
FIRST_REPORT_SPREAD_S: Final = 90 * 86400

CT_RATIOS: Final = (100, 200, 400, 600, 800, 1000, 1200, 1500, 2000, 3000, 4000, 5000)
PULSE_OUTPUT_RATIOS: Final = (1, 2, 4, 5, 8, 10, 16, 20, 25, 40, 50, 80, 100, 200, 400, 800, 1600)
DEMAND_PERIOD_S: Final = {1: 900, 2: 1800, 3: 3600}
MODEL_BY_PROTOCOL: Final = {"v3": "1017", "v4": "1024", "v5": "1024"}
FIRMWARE_BY_PROTOCOL: Final = {"v3": "15", "v4": "19", "v5": "28"}

# The fields each protocol reports (ekm-rs485.md §4.2-4.4; the cloud uses the same set).
_LN = (1, 2, 3)
V3_FIELDS: Final = (
    "Model", "Firmware", "kWh_Tot",
    *(f"kWh_Tariff_{t}" for t in (1, 2, 3, 4)), "Rev_kWh_Tot",
    *(f"Rev_kWh_Tariff_{t}" for t in (1, 2, 3, 4)),
    *(f"RMS_Volts_Ln_{n}" for n in _LN), *(f"Amps_Ln_{n}" for n in _LN),
    *(f"RMS_Watts_Ln_{n}" for n in _LN), "RMS_Watts_Tot",
    *(f"Cos_Theta_Ln_{n}" for n in _LN), *(f"Power_Factor_Ln_{n}" for n in _LN),
    "RMS_Watts_Max_Demand", "Max_Demand_Period", "Meter_Time", "CT_Ratio",
    *(f"Pulse_Cnt_{n}" for n in _LN), *(f"Pulse_Ratio_{n}" for n in _LN),
    "State_Inputs", "kWh_Scale", "Meter_Status_Code",
)  # fmt: skip
V4_FIELDS: Final = (
    "Model", "Firmware", "kWh_Tot", "Reactive_Energy_Tot", "Rev_kWh_Tot",
    *(f"kWh_Ln_{n}" for n in _LN), *(f"Rev_kWh_Ln_{n}" for n in _LN),
    "kWh_Rst", "Rev_kWh_Rst",
    *(f"RMS_Volts_Ln_{n}" for n in _LN), *(f"Amps_Ln_{n}" for n in _LN),
    *(f"RMS_Watts_Ln_{n}" for n in _LN), "RMS_Watts_Tot",
    *(f"Cos_Theta_Ln_{n}" for n in _LN), *(f"Power_Factor_Ln_{n}" for n in _LN),
    *(f"Reactive_Pwr_Ln_{n}" for n in _LN), "Reactive_Pwr_Tot", "Line_Freq",
    *(f"Pulse_Cnt_{n}" for n in _LN), "State_Inputs", "State_Watts_Dir", "State_Out",
    "kWh_Scale", "Meter_Time",
    *(f"kWh_Tariff_{t}" for t in (1, 2, 3, 4)), *(f"Rev_kWh_Tariff_{t}" for t in (1, 2, 3, 4)),
    "RMS_Watts_Max_Demand", "Max_Demand_Period",
    *(f"Pulse_Ratio_{n}" for n in _LN), "CT_Ratio", "Max_Demand_Rst", "CF_Ratio",
    "Meter_Status_Code_A", "Meter_Status_Code_B", "Meter_Status_Code_C",
)  # fmt: skip

_DIRECTION_CODES: Final = {
    "FFF": 1, "FFR": 2, "FRF": 3, "RFF": 4, "FRR": 5, "RFR": 6, "RRF": 7, "RRR": 8
}  # fmt: skip
_DEMAND_STEP_S: Final = 300.0  # max demand sampling step
_VOLTS: Final = tuple(f"RMS_Volts_Ln_{n}" for n in _LN)
_AMPS: Final = tuple(f"Amps_Ln_{n}" for n in _LN)
_WATTS: Final = tuple(f"RMS_Watts_Ln_{n}" for n in _LN)
_COS: Final = tuple(f"Cos_Theta_Ln_{n}" for n in _LN)
_PF: Final = tuple(f"Power_Factor_Ln_{n}" for n in _LN)
_VAR: Final = tuple(f"Reactive_Pwr_Ln_{n}" for n in _LN)
_PULSES: Final = tuple(f"Pulse_Cnt_{n}" for n in _LN)
_PULSE_RATIOS: Final = tuple(f"Pulse_Ratio_{n}" for n in _LN)
_KWH_LN: Final = tuple(f"kWh_Ln_{n}" for n in _LN)
_REV_KWH_LN: Final = tuple(f"Rev_kWh_Ln_{n}" for n in _LN)
_STATUS: Final = tuple(f"Meter_Status_Code_{c}" for c in "ABC")
_TARIFF: Final = tuple(f"kWh_Tariff_{t}" for t in (1, 2, 3, 4))
_REV_TARIFF: Final = tuple(f"Rev_kWh_Tariff_{t}" for t in (1, 2, 3, 4))

# --- registers as a function of time ----------------------------------------------------------

SLOT_S: Final = 300  # one slot of the day table (the old integration sub-step)
SLOTS: Final = 86400 // SLOT_S
# The lifetime registers, in the order of RegisterModel's channels.
REGISTERS: Final = (
    "kWh_Tot", "Rev_kWh_Tot", *_KWH_LN, *_REV_KWH_LN, *_TARIFF, *_REV_TARIFF,
    "kWh_Rst", "Rev_kWh_Rst", "Reactive_Energy_Tot", *_PULSES,
)  # fmt: skip
_V3_REGISTERS: Final = tuple(name for name in REGISTERS if name in V3_FIELDS)
REGISTER_INDEX: Final = {name: i for i, name in enumerate(REGISTERS)}
PULSE_CHANNELS: Final = frozenset(REGISTER_INDEX[name] for name in _PULSES)
# kWh_Rst and Rev_kWh_Rst grow exactly as kWh_Tot and Rev_kWh_Tot (they only reset apart).
_SAME_TABLE: Final = {REGISTER_INDEX["kWh_Rst"]: 0, REGISTER_INDEX["Rev_kWh_Rst"]: 1}
# Power channels for the Summary API's statistics: line 1..3 and the total, whose
# cumulative energies are the channels kWh_Ln_1..3 and kWh_Tot.
POWER_ENERGY_CHANNEL: Final = (*(REGISTER_INDEX[n] for n in _KWH_LN), REGISTER_INDEX["kWh_Tot"])
_PULSE_RATES: Final = (0.05, 0.01, 0.002)  # pulses per second at the mean load
# The demo home's water meter on the grid meter's pulse input 1 (SimMeter.water_pulses_per_day):
# EKM's pulse-output water meters, 0.1 gal per pulse, about 300 gal a day.
DEMO_WATER_GAL_PER_PULSE: Final = 0.1
DEMO_WATER_PULSES_PER_DAY: Final = 3000.0


def _shares(lines: int) -> tuple[float, float, float]:
    return (0.55, 0.45, 0.0) if lines == 2 else (0.36, 0.33, 0.31)


def _load_factor(hour: float) -> float:
    """The daily load curve at a local hour: a base, a breakfast and an evening peak."""
    return (
        0.6
        + 1.2 * math.exp(-(((hour - 7.5) / 1.2) ** 2))
        + 1.8 * math.exp(-(((hour - 19.0) / 2.0) ** 2))
    )


def _sun(hour: float) -> float:
    """Solar production as a share of the peak at a local hour."""
    return math.sin(math.pi * (hour - 6.0) / 12.0) if 6.0 < hour < 18.0 else 0.0


def _tariff_of_hour(hour: float) -> int:
    """Tariff index (0 = kWh_Tariff_1) by local hour."""
    if 7.0 <= hour < 17.0:
        return 1
    if 17.0 <= hour < 22.0:
        return 2
    return 0


def _line_parts(
    lines: int, load_w: float, solar_peak_w: float, hour: float, production: bool = False
) -> tuple[list[float], list[float]]:
    """Per line (W) at a local hour: the load and the signed solar part.

    A net meter (``production`` False) sees its load minus the panels' output (solar
    negative: exported); a production meter measures the panels' output alone, forward.
    """
    shares = _shares(lines)
    pv = solar_peak_w * _sun(hour) / (2 if lines == 2 else 3)
    if production:
        return [0.0, 0.0, 0.0], [pv if s else 0.0 for s in shares]
    load = load_w * _load_factor(hour)
    return [load * s for s in shares], [-pv if s else 0.0 for s in shares]


def _line_powers(
    lines: int, load_w: float, solar_peak_w: float, hour: float, production: bool = False
) -> list[float]:
    """Signed power per line (W) at a local hour: positive imports, negative exports."""
    loads, solar = _line_parts(lines, load_w, solar_peak_w, hour, production)
    return [load + pv for load, pv in zip(loads, solar, strict=True)]


def _sky(t: float) -> float:
    """The sunshine's minute-by-minute wobble (0.98..1.02), the same for every panel.

    Every solar meter of one place sees the same sky, so a home's production meter and
    its grid meter agree on the solar part of their readings (the load part of each
    meter's reading wobbles on its own).
    """
    return 0.98 + 0.04 * (zlib.crc32(int(t // 60).to_bytes(8, "little", signed=True)) / 2**32)


@dataclass(frozen=True, slots=True, eq=False)
class DayTable:
    """One local day of register increases, slot by slot, cumulative (SLOTS + 1 entries).

    ``cum[c][k]`` is channel c's increase from local midnight to the start of slot k
    (kWh, or pulses), ``sq[j][k]`` the same for the square of power channel j (W² s);
    ``cum[c][SLOTS]`` is one day's increase.
    """

    cum: tuple[array.array[float], ...]
    sq: tuple[array.array[float], ...]

    def slot_increase(self, channel: int, first: int, last: int) -> tuple[float, float]:
        """Smallest and largest one-slot increase of slots first..last (mod SLOTS)."""
        col = self.cum[channel]
        incs = [col[k + 1] - col[k] for k in _slot_range(first, last)]
        return min(incs), max(incs)


def _slot_range(first: int, last: int) -> range | list[int]:
    """Slots first..last of a day (both included; wraps past midnight; all if > a day)."""
    if last - first >= SLOTS - 1:
        return range(SLOTS)
    first %= SLOTS
    last %= SLOTS
    if first <= last:
        return range(first, last + 1)
    return [*range(first, SLOTS), *range(last + 1)]


def _water_use(hour: float) -> float:
    """A household's water use at a local hour: showers and breakfast, the evening, a trickle."""
    return (
        0.02
        + 1.0 * math.exp(-(((hour - 7.0) / 0.8) ** 2))
        + 0.7 * math.exp(-(((hour - 19.5) / 1.3) ** 2))
    )


@functools.cache
def _water_shares() -> tuple[float, ...]:
    """Each slot's share of a day's water (midpoint rule; they sum to 1)."""
    uses = [_water_use((k * SLOT_S + SLOT_S / 2) / 3600) for k in range(SLOTS)]
    total = sum(uses)
    return tuple(use / total for use in uses)


@functools.lru_cache(maxsize=4096)
def day_table(
    lines: int,
    power_factor: float,
    load_w: float,
    solar_peak_w: float,
    production: bool = False,
    *,
    water_per_day: float = 0.0,
) -> DayTable:
    """Build (once per set of physics parameters) the day table, midpoint rule per slot.

    ``water_per_day``: pulse input 1 counts a water meter's pulses (that many a day,
    mostly in the morning and the evening) instead of pulses following the load.
    """
    tan_phi = math.tan(math.acos(power_factor))
    hours = SLOT_S / 3600
    unique = len(REGISTERS) - len(_SAME_TABLE)
    cols = [array.array("d", bytes(8 * (SLOTS + 1))) for _ in range(unique)]
    sq = [array.array("d", bytes(8 * (SLOTS + 1))) for _ in range(4)]
    acc = [0.0] * unique
    acc_sq = [0.0] * 4
    # Unique column indexes: REGISTERS without kWh_Rst / Rev_kWh_Rst.
    ln, rev_ln, tar, rev_tar = 2, 5, 8, 12
    kvarh, pulses = 16, 17
    for k in range(SLOTS):
        hour = (k * SLOT_S + SLOT_S / 2) / 3600
        powers = _line_powers(lines, load_w, solar_peak_w, hour, production)
        tariff = _tariff_of_hour(hour)
        total_w = 0.0
        for i, p in enumerate(powers):
            kwh = abs(p) * hours / 1000
            acc[0] += kwh
            acc[ln + i] += kwh
            acc[tar + tariff] += kwh
            if p < 0:
                acc[1] += kwh
                acc[rev_ln + i] += kwh
                acc[rev_tar + tariff] += kwh
            acc[kvarh] += kwh * tan_phi
            acc_sq[i] += p * p * SLOT_S
            total_w += abs(p)
        acc_sq[3] += total_w * total_w * SLOT_S
        factor = _load_factor(hour)
        for j, rate in enumerate(_PULSE_RATES):
            if j == 0 and water_per_day > 0:
                acc[pulses] += water_per_day * _water_shares()[k]
            else:
                acc[pulses + j] += rate * factor * SLOT_S
        for c in range(unique):
            cols[c][k + 1] = acc[c]
        for j in range(4):
            sq[j][k + 1] = acc_sq[j]
    by_register = [*cols[:16], cols[0], cols[1], *cols[16:]]
    return DayTable(cum=tuple(by_register), sq=tuple(sq))


def _cumulative(col: array.array[float], t_rel: float) -> float:
    """A table column's increase from local day 0 to ``t_rel`` (s), linear within a slot."""
    days, s = divmod(t_rel, 86400.0)
    k = int(s / SLOT_S)
    if k >= SLOTS:  # float rounding at the very end of a day
        k = SLOTS - 1
    lo = col[k]
    return days * col[SLOTS] + lo + (col[k + 1] - lo) * (s - k * SLOT_S) / SLOT_S


@dataclass(slots=True, eq=False)
class Segment:
    """A stretch of the register function: from ``start`` on, one table and offsets."""

    start: float
    table: DayTable
    scale: tuple[float, ...]  # per channel: the table's unit load -> this meter's load
    power_scale: float  # watts per unit load (the squares scale by its square)
    shift: float  # t + shift = local seconds since ORIGIN's midnight
    resets: dict[int, float]  # channels set to a value at ``start`` (else continuous)
    offset: list[float] = field(default_factory=list)  # filled by RegisterModel

    def value(self, channel: int, t: float) -> float:
        """Channel value at ``t`` (unquantized)."""
        return self.offset[channel] + self.scale[channel] * _cumulative(
            self.table.cum[channel], t + self.shift
        )

    def increase(self, channel: int, t0: float, t1: float) -> float:
        """Channel increase over [t0, t1] within this segment."""
        col = self.table.cum[channel]
        return self.scale[channel] * (
            _cumulative(col, t1 + self.shift) - _cumulative(col, t0 + self.shift)
        )

    def square_integral(self, power: int, t0: float, t1: float) -> float:
        """∫ p² dt (W² s) of power channel ``power`` (0..2 lines, 3 total) over [t0, t1]."""
        col = self.table.sq[power]
        return self.power_scale**2 * (
            _cumulative(col, t1 + self.shift) - _cumulative(col, t0 + self.shift)
        )

    def slot_of(self, t: float) -> int:
        """The slot number (days x SLOTS + slot of the day) holding ``t``."""
        return int((t + self.shift) // SLOT_S)


class RegisterModel:
    """A meter's lifetime registers as functions of time (see the module comment)."""

    # Segments are kept sorted by start; the first starts at the first report and sets
    # every channel. A segment's offsets follow from the previous segment's value at its
    # start (continuity) unless it resets a channel. Before the first report, values
    # are those at the first report.

    __slots__ = ("_starts", "segments")

    def __init__(self, first: Segment) -> None:
        self.segments: list[Segment] = [first]
        self._starts: list[float] = [first.start]
        self._replay(0)

    @property
    def start(self) -> float:
        """When the registers begin (the first report)."""
        return self._starts[0]

    def segment_at(self, t: float) -> Segment:
        """The segment that holds ``t`` (the first one before it)."""
        segments = self.segments
        last = segments[-1]
        if t >= last.start:
            return last
        return segments[max(0, bisect.bisect_right(self._starts, t) - 1)]

    def value(self, channel: int, t: float) -> float:
        """Channel value at ``t`` (unquantized)."""
        t = max(t, self._starts[0])
        return self.segment_at(t).value(channel, t)

    def units(self, channel: int, t: float, unit: float) -> int:
        """Channel value at ``t`` in whole units of the resolution (floor, as a meter)."""
        return math.floor(self.value(channel, t) * unit + 1e-9)

    def units_at(self, channel: int, times: Iterable[float], unit: float) -> list[int]:
        """:meth:`units` at many times (the same arithmetic, inlined for speed)."""
        if len(self.segments) > 1:
            return [self.units(channel, t, unit) for t in times]
        seg = self.segments[0]
        col = seg.table.cum[channel]
        day = col[SLOTS]
        offset, scale, shift, first = seg.offset[channel], seg.scale[channel], seg.shift, seg.start
        floor = math.floor
        out = []
        for t in times:
            days, s = divmod(max(t, first) + shift, 86400.0)
            k = int(s / SLOT_S)
            if k >= SLOTS:
                k = SLOTS - 1
            lo = col[k]
            value = offset + scale * (
                days * day + lo + (col[k + 1] - lo) * (s - k * SLOT_S) / SLOT_S
            )
            out.append(floor(value * unit + 1e-9))
        return out

    def units_of(self, channels: Iterable[tuple[int, float]], t: float) -> list[int]:
        """:meth:`units` of many (channel, unit) pairs at one time (same arithmetic)."""
        t = max(t, self._starts[0])
        seg = self.segment_at(t)
        days, s = divmod(t + seg.shift, 86400.0)
        k = int(s / SLOT_S)
        if k >= SLOTS:
            k = SLOTS - 1
        part = s - k * SLOT_S
        cum, offset, scale = seg.table.cum, seg.offset, seg.scale
        floor = math.floor
        out = []
        for c, unit in channels:
            col = cum[c]
            lo = col[k]
            value = offset[c] + scale[c] * (
                days * col[SLOTS] + lo + (col[k + 1] - lo) * part / SLOT_S
            )
            out.append(floor(value * unit + 1e-9))
        return out

    def extremes(self, channel: int, t0: float, t1: float, unit: float) -> tuple[int, int]:
        """Smallest and largest quantized value over [t0, t1] (resets included)."""
        first = self.units(channel, t0, unit)
        low = high = first
        last = self.units(channel, t1, unit)
        low, high = min(low, last), max(high, last)
        if len(self.segments) > 1:
            for i in range(bisect.bisect_right(self._starts, t0), len(self._starts)):
                start = self._starts[i]
                if start > t1:
                    break
                before = math.floor(self.segments[i - 1].value(channel, start) * unit + 1e-9)
                after = math.floor(self.segments[i].value(channel, start) * unit + 1e-9)
                low, high = min(low, before, after), max(high, before, after)
        return low, high

    def pieces(self, t0: float, t1: float) -> list[tuple[Segment, float, float]]:
        """The segments overlapping [t0, t1], each with its own part of the interval."""
        t0 = max(t0, self._starts[0])
        if len(self.segments) == 1 or t0 >= self._starts[-1]:
            return [(self.segment_at(t0), t0, t1)]
        out: list[tuple[Segment, float, float]] = []
        i = max(0, bisect.bisect_right(self._starts, t0) - 1)
        while i < len(self.segments) and (i == 0 or self._starts[i] <= t1):
            end = self._starts[i + 1] if i + 1 < len(self._starts) else math.inf
            lo, hi = max(t0, self._starts[i]), min(t1, end)
            if hi >= lo:
                out.append((self.segments[i], lo, hi))
            i += 1
        return out or [(self.segment_at(t0), t0, t1)]

    def flow(self, channel: int, t0: float, t1: float) -> float:
        """What flowed through a channel over [t0, t1] (resets do not count)."""
        return sum(seg.increase(channel, lo, hi) for seg, lo, hi in self.pieces(t0, t1))

    def insert(self, segment: Segment) -> None:
        """Add a segment (after any at the same time) and recompute the later offsets."""
        if segment.start < self._starts[0]:
            raise ValueError("A register segment cannot start before the first report")
        i = bisect.bisect_right(self._starts, segment.start)
        self.segments.insert(i, segment)
        self._starts.insert(i, segment.start)
        self._replay(i)

    def restart(self, first: Segment) -> None:
        """Replace the first segment (a new first report or initial values)."""
        keep = [s for s in self.segments[1:] if s.start >= first.start]
        self.segments = [first, *keep]
        self._starts = [s.start for s in self.segments]
        self._replay(0)

    def _replay(self, since: int) -> None:
        for i in range(since, len(self.segments)):
            seg = self.segments[i]
            previous = self.segments[i - 1] if i else None
            offsets = []
            for c in range(len(REGISTERS)):
                if c in seg.resets or previous is None:
                    value = seg.resets.get(c, 0.0)
                else:
                    value = previous.value(c, seg.start)
                offsets.append(
                    value - seg.scale[c] * _cumulative(seg.table.cum[c], seg.start + seg.shift)
                )
            seg.offset = offsets


def gateway_key(gateway_id: int, secret: str) -> str:
    """Make a Push3-style gateway key: unpadded base64 of ``id:secret``."""
    return base64.b64encode(f"{gateway_id}:{secret}".encode()).decode().rstrip("=")


def lan_key(mac: str) -> str:
    """A gateway's LAN key (the ``key=`` of its local readMeter URL), fixed per MAC."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ekmsim:lan:{mac}").hex[:20]


def meter_key(key_id: int, secret: str) -> str:
    """Make a per-meter key, shaped as every EKM key: unpadded base64 of ``id:secret``."""
    return gateway_key(key_id, secret)


def meter_time_text(epoch: float, utc_offset_s: float) -> str:
    """Format the meter clock ``YYMMDDWWhhmmss`` (WW: 01 = Sunday ... 07 = Saturday)."""
    return _meter_time_text(int(epoch + utc_offset_s))


@functools.lru_cache(maxsize=256)
def _meter_time_text(local_epoch: int) -> str:
    local = datetime.fromtimestamp(local_epoch, UTC)
    weekday = (local.weekday() + 1) % 7 + 1
    return f"{local:%y%m%d}{weekday:02d}{local:%H%M%S}"


class SimClock:
    """Simulated wall clock in epoch seconds (real time, sped up, or manual)."""

    # Real time by default, optionally sped up by ``speed``; ``manual=True`` freezes it so
    # only advance() (or set()) moves it, which is what tests want.

    def __init__(
        self, start: float | None = None, *, speed: float = 1.0, manual: bool = False
    ) -> None:
        self.speed = speed
        self.manual = manual
        self._real0 = time.time()
        self._sim0 = self._real0 if start is None else start

    def now(self) -> float:
        """Return the simulated time, epoch seconds."""
        if self.manual:
            return self._sim0
        return self._sim0 + (time.time() - self._real0) * self.speed

    def advance(self, seconds: float) -> float:
        """Move the clock forward; returns the new time."""
        self._sim0 += seconds
        return self.now()

    def set(self, epoch: float) -> None:
        """Jump to ``epoch`` (the clock keeps its mode and speed)."""
        self._real0 = time.time()
        self._sim0 = epoch


_PHYSICS_FIELDS: Final = frozenset(
    {"lines", "base_load_w", "solar", "solar_peak_w", "production", "power_factor"}
    | {"utc_offset_s", "water_pulses_per_day"}
)


@functools.lru_cache(maxsize=64)
def _channels(names: tuple[str, ...], unit: float) -> tuple[tuple[int, float], ...]:
    """(channel, unit) of register names: pulses count whole, kWh at ``unit``."""
    return tuple(
        (c, 1.0 if c in PULSE_CHANNELS else unit) for c in (REGISTER_INDEX[n] for n in names)
    )


def default_first_report(address: str) -> float:
    """A meter's default first report: ORIGIN plus whole hours derived from its address."""
    return ORIGIN + zlib.crc32(address.encode()) % (FIRST_REPORT_SPREAD_S // 3600) * 3600


@dataclass(eq=False, kw_only=True)
class SimMeter:
    """One simulated Omnimeter; see the module docstring.

    ``first_report`` (epoch s; default :func:`default_first_report`) is when the meter
    first reported: its registers equal ``initial_kwh`` (split over lines and tariffs)
    then, and the cloud holds no data for it before. ``last_report`` (None = still
    reporting) ends its data; so does ``responsive = False`` from that moment (the time
    is recorded, see :attr:`unresponsive_since`) until it is set back to True.

    Physics: a meter measures a load of ``base_load_w`` times the daily load curve; with
    ``solar`` it is a net meter whose panels (``solar_peak_w``) push the surplus back
    (reverse energy). With ``production`` (and ``solar``) it measures the panels' output
    itself, forward, and no load (``base_load_w`` is not used): a PV production meter.
    """

    address: str
    name: str | None = None  # its name in EKM's account portal (the Account API's "name")
    protocol: str = "v4"
    model: str = ""  # default from the protocol
    firmware: str = ""
    gateway_mac: str | None = None
    solar: bool = False
    password: str = "00000000"
    ct_ratio: int = 200
    pulse_ratios: list[int] = field(default_factory=lambda: [1, 1, 1])
    cf_ratio: int = 800
    max_demand_period: int = 1
    max_demand_rst: int = 0
    kwh_scale: int = 2
    relays: list[bool] = field(default_factory=lambda: [False, False])
    responsive: bool = True
    meter_time_offset: float = 0.0  # seconds the meter clock runs ahead of true time
    # Physics knobs (changing one later starts a new register segment at that time).
    lines: int = 2  # 2: split-phase 120/240 V (line 3 idle); 3: three-phase 120/208 V
    base_load_w: float = 700.0
    solar_peak_w: float = 5000.0
    production: bool = False  # a PV production meter (see the class docstring)
    # Pulse input 1 wired to a water meter: pulses a day (0: pulses follow the load).
    water_pulses_per_day: float = 0.0
    power_factor: float = 0.95  # lagging
    utc_offset_s: int = -5 * 3600  # local time for the load curve and Meter_Time
    initial_kwh: float = 1500.0  # kWh_Tot at first_report
    first_report: float | None = None  # epoch s; None: default_first_report(address)
    last_report: float | None = None  # epoch s the meter stops reporting; None: never
    seed: int = 0
    clock: SimClock | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in MODEL_BY_PROTOCOL:
            raise ValueError(f"Unknown protocol {self.protocol!r}")
        if len(self.address) != 12 or not self.address.isdigit():
            raise ValueError("A meter address is 12 digits")
        self.model = self.model or MODEL_BY_PROTOCOL[self.protocol]
        self.firmware = self.firmware or FIRMWARE_BY_PROTOCOL[self.protocol]
        if self.first_report is None:
            self.first_report = default_first_report(self.address)
        self._rng = random.Random(f"{self.seed}:{self.address}")
        self._initial_pulses = [float(self._rng.randrange(1000, 50000)) for _ in range(3)]
        self._max_demand = 0.0 if self.production else self.base_load_w * 2.0
        self._demand_key: int | None = None
        self._relay_until: list[float | None] = [None, None]
        self._last_t: float | None = None
        self._tan_phi = math.tan(math.acos(self.power_factor))
        # Outages: reads are missing at times t with start < t <= end.
        self._outages: list[tuple[float, float]] = []
        self._down_since: float | None = None if self.responsive else -math.inf
        self.register_model = RegisterModel(self._first_segment())
        self._ready = True

    def __setattr__(self, name: str, value: Any) -> None:
        ready = self.__dict__.get("_ready", False)
        if not ready:
            object.__setattr__(self, name, value)
            return
        if name == "responsive":
            self._set_responsive(bool(value))
        object.__setattr__(self, name, value)
        if name in _PHYSICS_FIELDS:
            if name == "power_factor":
                object.__setattr__(self, "_tan_phi", math.tan(math.acos(self.power_factor)))
            now = self._now()
            if now <= self.register_model.start:  # not reporting yet: new physics throughout
                self.register_model.restart(self._first_segment())
            else:
                self.register_model.insert(self._segment(now, {}))
        elif name in ("first_report", "initial_kwh"):
            if self.first_report is None:
                object.__setattr__(self, "first_report", default_first_report(self.address))
            self.register_model.restart(self._first_segment())

    # --- registers -----------------------------------------------------------------------

    def _segment(self, start: float, resets: dict[int, float]) -> Segment:
        norm = self.base_load_w if self.base_load_w > 0 and not self.production else 1.0
        table = day_table(
            self.lines,
            self.power_factor,
            self.base_load_w / norm,
            self.solar_peak_w / norm if self.solar else 0.0,
            self.production,
            water_per_day=self.water_pulses_per_day,
        )
        scale = tuple(1.0 if c in PULSE_CHANNELS else norm for c in range(len(REGISTERS)))
        return Segment(
            start=start,
            table=table,
            scale=scale,
            power_scale=norm,
            shift=self.utc_offset_s - ORIGIN,
            resets=resets,
        )

    def initial_values(self, kwh: float, pulses: list[float] | None = None) -> dict[int, float]:
        """Every register of a meter whose kWh_Tot is ``kwh`` (by channel number)."""
        rev = kwh * 0.25 if self.solar and not self.production else 0.0
        shares = _shares(self.lines)
        values = {
            "kWh_Tot": kwh,
            "Rev_kWh_Tot": rev,
            **{_KWH_LN[i]: kwh * s for i, s in enumerate(shares)},
            **{_REV_KWH_LN[i]: rev * s for i, s in enumerate(shares)},
            **{_TARIFF[t]: kwh * s for t, s in enumerate((0.4, 0.45, 0.15, 0.0))},
            **{_REV_TARIFF[t]: rev * s for t, s in enumerate((0.0, 0.9, 0.1, 0.0))},
            "kWh_Rst": kwh * 0.1,
            "Rev_kWh_Rst": rev * 0.1,
            "Reactive_Energy_Tot": kwh * 0.3,
            **{_PULSES[i]: p for i, p in enumerate(pulses or [0.0, 0.0, 0.0])},
        }
        return {REGISTER_INDEX[name]: value for name, value in values.items()}

    def _first_segment(self) -> Segment:
        assert self.first_report is not None
        resets = self.initial_values(self.initial_kwh, self._initial_pulses)
        return self._segment(self.first_report, resets)

    def unit_of(self, name: str) -> float:
        """Resolution of a register as 10**decimals (pulses count whole)."""
        return 1.0 if name in _PULSES else 10.0**self.kwh_decimals

    def registers(self, t: float | None = None, names: Iterable[str] | None = None) -> Read:
        """Register values at ``t`` at the meter's resolution (every register by default)."""
        if t is None:
            t = self._now()
        digits = self.kwh_decimals
        unit = 10.0**digits
        wanted = REGISTERS if names is None else tuple(names)
        channels = _channels(wanted, unit)
        out: Read = {}
        for name, (c, u), units in zip(
            wanted, channels, self.register_model.units_of(channels, t), strict=True
        ):
            out[name] = units if c in PULSE_CHANNELS else round(units / u, digits)
        return out

    def replace_registers(self, at: float | None = None, initial_kwh: float = 0.0) -> None:
        """Simulate a replaced (or reset) meter from ``at`` (default now).

        Every lifetime register restarts as a new meter's, from ``initial_kwh`` (pulses
        from 0). Reads already stored after ``at`` keep their values; Fleet.replace_registers also
        rewrites those.
        """
        at = self._now() if at is None else at
        self.register_model.insert(self._segment(at, self.initial_values(initial_kwh)))

    # --- reporting -------------------------------------------------------------------------

    def _set_responsive(self, responsive: bool) -> None:
        if responsive == self.responsive:
            return
        now = self._now()
        if not responsive:
            object.__setattr__(self, "_down_since", now)
        elif self._down_since is not None:  # -inf: built unresponsive
            self._outages.append((self._down_since, now))
            object.__setattr__(self, "_down_since", None)

    @property
    def unresponsive_since(self) -> float | None:
        """When the meter stopped answering (responsive set to False), else None."""
        return self._down_since

    @property
    def outages(self) -> list[tuple[float, float]]:
        """Past outages (start, end): no reads at times start < t <= end."""
        return list(self._outages)

    def reports_at(self, t: float) -> bool:
        """Whether the cloud holds a read of this meter taken at ``t``."""
        first = self.first_report
        if first is None or t < first:
            return False
        if self.last_report is not None and t > self.last_report:
            return False
        if self._down_since is not None and t > self._down_since:
            return False
        return not self._outages or not any(start < t <= end for start, end in self._outages)

    def reporting_end(self) -> float:
        """The last time the meter may report: last_report or the start of an outage."""
        end = math.inf if self.last_report is None else self.last_report
        if self._down_since is not None:
            end = min(end, self._down_since)
        return end

    # --- physics -----------------------------------------------------------------------

    def _shares(self) -> tuple[float, float, float]:
        return _shares(self.lines)

    def _local_hour(self, t: float) -> float:
        return ((t + self.utc_offset_s) % 86400) / 3600

    def load_factor(self, t: float) -> float:
        """Return the daily load curve: a base, a breakfast and a larger evening peak."""
        return _load_factor(self._local_hour(t))

    def solar_w(self, t: float) -> float:
        """Solar production (W), 0 at night or without panels."""
        return self.solar_peak_w * _sun(self._local_hour(t)) if self.solar else 0.0

    def line_parts(self, t: float) -> tuple[list[float], list[float]]:
        """Per line (W): the load and the signed solar part (see :func:`_line_parts`)."""
        peak = self.solar_peak_w if self.solar else 0.0
        return _line_parts(self.lines, self.base_load_w, peak, self._local_hour(t), self.production)

    def line_power(self, t: float) -> list[float]:
        """Signed power per line (W): positive imports, negative exports."""
        loads, solar = self.line_parts(t)
        return [load + pv for load, pv in zip(loads, solar, strict=True)]

    def _demand_period_key(self, t: float) -> int | None:
        local = t + self.utc_offset_s
        match self.max_demand_rst:
            case 4:
                return int(local // 3600)
            case 3:
                return int(local // 86400)
            case 2:
                return int((local // 86400 + 4) // 7)  # weeks start on Sunday
            case 1:
                day = datetime.fromtimestamp(local, UTC)
                return day.year * 12 + day.month
        return None

    def _update(self, now: float) -> None:
        """Revert timed relays and follow the max demand up to ``now``."""
        for i, until in enumerate(self._relay_until):
            if until is not None and until <= now:
                self.relays[i] = not self.relays[i]
                self._relay_until[i] = None
        if self._last_t is None:
            self._last_t = now
            return
        # The load repeats every day: the last day holds every peak there is.
        t = max(self._last_t, now - 86400.0)
        while t < now:
            step = min(_DEMAND_STEP_S, now - t)
            mid = t + step / 2
            total = sum(abs(p) for p in self.line_power(mid))
            key = self._demand_period_key(mid)
            if key != self._demand_key:
                if self._demand_key is not None:
                    self._max_demand = 0.0
                self._demand_key = key
            self._max_demand = max(self._max_demand, total)
            t += step
        self._last_t = max(self._last_t, now)

    def advance(self, now: float) -> None:
        """Follow the meter's state (relays, max demand) up to ``now``, no snapshot."""
        self._update(now)

    def _now(self) -> float:
        return self.clock.now() if self.clock is not None else time.time()

    # --- snapshot ---------------------------------------------------------------------------

    @property
    def kwh_decimals(self) -> int:
        """Decimals of the kWh registers: 1 on v3, ``kwh_scale`` on v4/v5."""
        return 1 if self.protocol == "v3" else self.kwh_scale

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names this meter reports."""
        return V3_FIELDS if self.protocol == "v3" else V4_FIELDS

    @property
    def register_names(self) -> tuple[str, ...]:
        """The lifetime registers this meter reports, in REGISTERS order."""
        return _V3_REGISTERS if self.protocol == "v3" else REGISTERS

    def snapshot(self, now: float | None = None) -> Read:
        """Return the meter's normalized values at ``now`` (registers from the model)."""
        if now is None:
            now = self._now()
        self._update(now)
        rnd = self._rng.random
        registers = self.registers(now, self.register_names)
        # The load wobbles per meter, the solar part with the sky (the same for every
        # meter, see _sky): a home's grid meter plus its production meter is its load.
        loads, solar = self.line_parts(now)
        sky = _sky(now)
        powers = [
            load * (0.98 + 0.04 * rnd()) + pv * sky for load, pv in zip(loads, solar, strict=True)
        ]
        watts = [round(abs(p)) for p in powers]
        volts = [round(118.5 + 3 * rnd(), 1) if s else 0.0 for s in self._shares()]
        pf_code = round(self.power_factor * 100)
        codes = [pf_code if w else 200 for w in watts]  # an idle line reads C000
        pulses = [int(registers[name]) for name in _PULSES]
        pf = self.power_factor
        values: Read = {
            "Model": self.model,
            "Firmware": self.firmware,
            "RMS_Watts_Tot": sum(watts),
            "RMS_Watts_Max_Demand": round(self._max_demand, 1),
            "Max_Demand_Period": self.max_demand_period,
            "Meter_Time": meter_time_text(now + self.meter_time_offset, self.utc_offset_s),
            "CT_Ratio": self.ct_ratio,
            # Input levels follow the pulses: In1 low = bit 2, In2 = bit 1, In3 = bit 0.
            "State_Inputs": (pulses[0] & 1) << 2 | (pulses[1] & 1) << 1 | (pulses[2] & 1),
            **registers,
        }
        for i in range(3):
            values[_VOLTS[i]] = volts[i]
            values[_AMPS[i]] = round(watts[i] / (volts[i] * pf), 1) if volts[i] else 0.0
            values[_WATTS[i]] = watts[i]
            values[_COS[i]] = _COS_TEXT[codes[i]]
            values[_PF[i]] = codes[i]
            values[_PULSE_RATIOS[i]] = self.pulse_ratios[i]
        if self.protocol == "v3":
            values["kWh_Scale"] = 1
            values["Meter_Status_Code"] = "00"
            return values
        var = [round(w * self._tan_phi) for w in watts]
        for i in range(3):
            values[_VAR[i]] = var[i]
            values[_STATUS[i]] = "0"
        direction = "".join("R" if p < 0 and w else "F" for p, w in zip(powers, watts, strict=True))
        values |= {
            "Reactive_Pwr_Tot": sum(var),
            "Line_Freq": round(59.98 + 0.04 * rnd(), 2),
            "State_Watts_Dir": _DIRECTION_CODES[direction],
            "State_Out": 1 + 2 * self.relays[0] + self.relays[1],
            "kWh_Scale": self.kwh_scale,
            "Max_Demand_Rst": self.max_demand_rst,
            "CF_Ratio": self.cf_ratio,
        }
        return values

    # --- commands (RS-485 writes) -----------------------------------------------------------

    @property
    def supports_relays(self) -> bool:
        """v3 meters have no controllable relays."""
        return self.protocol != "v3"

    def set_relay(self, relay: int, closed: bool, duration_s: int = 0) -> None:
        """Close/open relay 1 or 2; with a duration it reverts after that many seconds."""
        if not self.supports_relays:
            raise ValueError("v3 meters have no relays")
        if relay not in (1, 2) or not 0 <= duration_s <= 9999:
            raise ValueError("Relay 1 or 2, duration 0..9999 s")
        now = self._now()
        self._update(now)
        self.relays[relay - 1] = closed
        self._relay_until[relay - 1] = now + duration_s if duration_s else None

    def set_time(self, when: datetime) -> None:
        """Set the meter clock; a naive datetime is the meter's local wall time."""
        if when.tzinfo is None:
            epoch = when.replace(tzinfo=UTC).timestamp() - self.utc_offset_s
        else:
            epoch = when.timestamp()
        self.meter_time_offset = epoch - self._now()

    def zero_resettable(self) -> None:
        """Clear kWh_Rst and Rev_kWh_Rst (v4/v5) from now on."""
        resets = {REGISTER_INDEX["kWh_Rst"]: 0.0, REGISTER_INDEX["Rev_kWh_Rst"]: 0.0}
        self.register_model.insert(self._segment(self._now(), resets))

    def reset_max_demand(self) -> None:
        """Clear RMS_Watts_Max_Demand."""
        self._update(self._now())
        self._max_demand = 0.0

    def set_ct_ratio(self, value: int) -> None:
        """Set CT_Ratio (one of CT_RATIOS)."""
        if value not in CT_RATIOS:
            raise ValueError("Unsupported CT ratio")
        self.ct_ratio = value

    def set_pulse_ratio(self, n: int, value: int) -> None:
        """Set Pulse_Ratio_n (n = 1..3, 1..9999)."""
        if n not in _LN or not 1 <= value <= 9999:
            raise ValueError("Pulse input 1..3, ratio 1..9999")
        self.pulse_ratios[n - 1] = value

    def set_pulse_output_ratio(self, value: int) -> None:
        """Set CF_Ratio, the kWh pulse-output constant (v4/v5)."""
        if value not in PULSE_OUTPUT_RATIOS:
            raise ValueError("Unsupported pulse output ratio")
        self.cf_ratio = value

    def set_max_demand_period(self, value: int) -> None:
        """Set Max_Demand_Period (1 = 15, 2 = 30, 3 = 60 minutes)."""
        if value not in DEMAND_PERIOD_S:
            raise ValueError("Max demand period is 1..3")
        self.max_demand_period = value

    def set_max_demand_reset(self, value: int) -> None:
        """Set Max_Demand_Rst (0 off, 1 monthly, 2 weekly, 3 daily, 4 hourly)."""
        if not 0 <= value <= 4:
            raise ValueError("Max demand reset is 0..4")
        self.max_demand_rst = value


def _cos_theta(code: int) -> str:
    """Format a PF code as the gateway's '0.95 L' text (C = leading, L = lagging)."""
    if code < 100:
        return f"{code / 100:.2f} L"
    if code > 100:
        return f"{(200 - code) / 100:.2f} C"
    return "1.00"


_COS_TEXT: Final = {code: _cos_theta(code) for code in range(201)}


@dataclass(frozen=True, slots=True, kw_only=True)
class SimToken:
    """An EKM API token (bearer): READ (GET only) or READ/WRITE, of one account."""

    token: str
    write: bool = True  # False: READ only (the Trigger API refuses POST/PUT/DELETE)
    account_key: str = DEMO_ACCOUNT_KEY


# Outcomes of a SimCommand.
QUEUED: Final = "queued"  # waiting for its delay, or for the gateway to come online
APPLIED: Final = "applied"
IGNORED: Final = "ignored"  # a v3 meter: no controllable relays
NO_ANSWER: Final = "no_answer"  # the meter did not answer the gateway (not reporting)
DROPPED: Final = "dropped"  # Faults.drop_commands: accepted, never applied
CANCELLED: Final = "cancelled"  # the simulator stopped before it was applied


@dataclass(eq=False, kw_only=True)
class SimCommand:
    """A SetRelay command the Settings API accepted for a gateway (times: fleet clock)."""

    msg_id: str
    gateway: str  # MAC
    meter: str  # 12-digit address
    relay: int  # 1 or 2
    closed: bool  # True = "close" (on)
    duration_s: int  # 0 = hold
    body: dict[str, Any]  # the request body as received (without any key)
    received_at: float
    ready: bool = False  # its delivery delay has passed
    applied_at: float | None = None  # when the gateway handled it
    outcome: str = QUEUED

    def to_json(self) -> dict[str, Any]:
        """The admin log entry (no key, no token)."""
        return {
            "msg_id": self.msg_id,
            "time": self.received_at,
            "gateway": self.gateway,
            "meter": self.meter,
            "body": self.body,
            "applied_at": self.applied_at,
            "outcome": self.outcome,
        }


@dataclass(eq=False, kw_only=True)
class SimGateway:
    """A Push3 gateway: lowercase 12-hex MAC, name, its key and its meters.

    ``online`` is what the Summary V2 GStat endpoint reports (its meters keep reporting
    either way: make them unresponsive for that); ``last_seen`` is when it went offline.
    ``commands`` holds the Settings API commands not applied yet, oldest first.
    """

    mac: str
    name: str
    key: str
    meters: list[str] = field(default_factory=list)
    online: bool = True
    last_seen: float | None = None  # epoch s it was last seen; None while online
    commands: deque[SimCommand] = field(default_factory=deque, repr=False)
    lan_key: str = ""  # its local readMeter API's key (ekmsim.lan); default lan_key(mac)

    def __post_init__(self) -> None:
        self.lan_key = self.lan_key or lan_key(self.mac)

    def set_online(self, online: bool, now: float) -> None:
        """Go online, or offline as of ``now`` (``last_seen``)."""
        if online:
            self.last_seen = None
        elif self.online:
            self.last_seen = now
        self.online = online


@dataclass(eq=False, kw_only=True)
class Fleet:
    """Everything an EKM account holds, plus the clock that drives it."""

    account_key: str = DEMO_ACCOUNT_KEY
    gateways: dict[str, SimGateway] = field(default_factory=dict)  # by MAC
    meters: dict[str, SimMeter] = field(default_factory=dict)  # by 12-digit address
    interval_s: int = 60
    clock: SimClock = field(default_factory=SimClock)
    host: str = "psrv1.ekmmetering.com"
    timezone: str = "UTC"  # of the stored Date/Time strings
    revoked_keys: set[str] = field(default_factory=set)  # keys and API tokens
    # Per-meter keys: key -> the 12-digit address of the one meter it opens.
    meter_keys: dict[str, str] = field(default_factory=dict)
    api_tokens: dict[str, SimToken] = field(default_factory=dict)  # by token
    # The Trigger API's store: gateway MAC -> trigger_uuid -> trigger (every field kept).
    triggers: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # Named actions other simulated services offer (POST /_sim/control/<name>).
    controls: dict[str, Callable[[], Awaitable[object]]] = field(default_factory=dict)
    # Reads kept per meter. EKM keeps 1,000; each read costs about 2.5 kB here, so a
    # 1,000-meter fleet with full history holds about 2.5 GB: lower it for big fleets.
    history_len: int = HISTORY_LEN

    def __post_init__(self) -> None:
        self._history: dict[str, deque[Read]] = {}
        self._listeners: list[Listener] = []
        self._last_boundary: int | None = None
        for meter in self.meters.values():
            meter.clock = self.clock

    # --- building ------------------------------------------------------------------------

    def add_gateway(self, gateway: SimGateway) -> SimGateway:
        """Add a gateway (its meters are linked as they are added)."""
        self.gateways[gateway.mac] = gateway
        return gateway

    def add_meter(self, meter: SimMeter) -> SimMeter:
        """Add a meter; it joins its gateway's meter list."""
        meter.clock = self.clock
        self.meters[meter.address] = meter
        if meter.gateway_mac is not None:
            meters = self.gateways[meter.gateway_mac].meters
            if meter.address not in meters:
                meters.append(meter.address)
        return meter

    @classmethod
    def demo(
        cls,
        *,
        clock: SimClock | None = None,
        interval_s: int = 60,
        history_days: float | None = None,
        named: bool = False,
    ) -> Fleet:
        """Build EKM's demo account: the demo keys and five meters of every kind.

        ``named``: the meters have names in the account (as an owner gives them in EKM's
        portal; ``python -m ekmsim`` does this); without, the Account API lists addresses
        only, so entity ids keep their address-based form in tests.

        Four of them are one home, measured consistently (see the comment below); every
        meter of the home first reported at the same time, early in 2023, or all of them
        ``history_days`` before the clock's time (on the interval grid).
        """
        # The demo home: a house with rooftop PV and two Push3 gateways.
        # - 000000000099 v4 (Garage Push3 4016fa010226): the grid connection. It measures
        #   the whole house's load (1,400 W base) minus the PV output: it imports at night
        #   and exports by day (reverse energy = return to grid). Its pulse input 1 counts
        #   the house's water meter (DEMO_WATER_GAL_PER_PULSE gal per pulse, about 300 gal a
        #   day, mostly in the morning and the evening).
        # - 000000015635 v5 (Garage Push3): the PV production meter on the inverter's
        #   output, the same 10 kW panels, forward (its forward energy is the production).
        #   Relay 1 (closed) is wired to the inverter's enable input (a command moves
        #   the relay only: the simulated production goes on).
        # - 000000010388 v3 (Demo Push3 4016fa0500cd, key DEMO_GATEWAY_KEY): a sub-panel
        #   of the house (950 W base), inside the grid meter's load.
        # - 000000010389 v4 (Demo Push3, the demo meter): the electric water heater on a
        #   circuit of that sub-panel (700 W base); relay 1 switches it.
        # Every load follows the same daily curve, so at every instant the water heater <
        # the sub-panel < the house (= grid meter + PV meter), also with each meter's own
        # 2 % wobble and in every hour at the meters' resolutions (tests/sim/test_fleet.py).
        # 000300000001 v4, three-phase 120/208 V on no gateway, is a separate building (a
        # workshop on its own service), not part of the home.
        fleet = cls(clock=clock or SimClock(), interval_s=interval_s)
        fleet.add_gateway(SimGateway(mac=DEMO_GATEWAY_MAC, name="Demo Push3", key=DEMO_GATEWAY_KEY))
        fleet.add_gateway(
            SimGateway(
                mac=DEMO_GARAGE_MAC, name="Garage Push3", key=gateway_key(65269437, "Sim-Key-2!")
            )
        )
        home_first = (
            fleet.history_start(history_days)
            if history_days is not None
            else default_first_report(DEMO_METER)
        )
        panels_w = 10_000.0  # the PV system's peak, seen by the grid and the PV meter
        for meter in (
            SimMeter(
                address=DEMO_WATER_HEATER_METER,
                protocol="v4",
                gateway_mac=DEMO_GATEWAY_MAC,
                base_load_w=700.0,
                first_report=home_first,
            ),
            SimMeter(
                address=DEMO_SUBPANEL_METER,
                protocol="v3",
                gateway_mac=DEMO_GATEWAY_MAC,
                base_load_w=950.0,
                initial_kwh=8000.0,
                first_report=home_first,
            ),
            SimMeter(
                address=DEMO_SOLAR_METER,
                protocol="v5",
                gateway_mac=DEMO_GARAGE_MAC,
                solar=True,
                production=True,
                base_load_w=0.0,
                kwh_scale=1,
                relays=[True, False],
                first_report=home_first,
                solar_peak_w=panels_w,
            ),
            SimMeter(
                address=DEMO_GRID_METER,
                protocol="v4",
                gateway_mac=DEMO_GARAGE_MAC,
                solar=True,
                base_load_w=1400.0,
                initial_kwh=4000.0,
                first_report=home_first,
                solar_peak_w=panels_w,
                water_pulses_per_day=DEMO_WATER_PULSES_PER_DAY,
            ),
            SimMeter(
                address=DEMO_THREE_PHASE_METER,
                protocol="v4",
                lines=3,
                kwh_scale=0,
                ct_ratio=1500,
                first_report=None if history_days is None else home_first,
            ),
        ):
            if named:
                meter.name = DEMO_NAMES[meter.address]
            fleet.add_meter(meter)
        fleet.add_meter_key(DEMO_METER_KEY, DEMO_METER)
        fleet.add_token(DEMO_API_TOKEN)
        for gw in fleet.gateways.values():
            fleet.add_trigger(gw.mac, demo_trigger(gw))
        return fleet

    def history_start(self, days: float) -> float:
        """The first read time ``days`` before the clock's time (on the interval grid)."""
        start = self.clock.now() - days * 86400
        return float(math.ceil(start / self.interval_s) * self.interval_s)

    @classmethod
    def generate(
        cls,
        n_meters: int,
        *,
        seed: int = 0,
        per_gateway: int = 32,
        clock: SimClock | None = None,
        interval_s: int = 60,
        account_key: str = DEMO_ACCOUNT_KEY,
        history_len: int = HISTORY_LEN,
        history_days: float | None = None,
        first_report: float | None = None,
    ) -> Fleet:
        """Build a deterministic fleet of 1..1000 meters, ``per_gateway`` per gateway.

        Every meter first reported at ``first_report`` (epoch s), else ``history_days``
        before the clock's time (on the interval grid), else at its default (early 2023).
        """
        if not 1 <= n_meters <= 1000 or not 1 <= per_gateway <= 32:
            raise ValueError("1..1000 meters, 1..32 per gateway")
        rng = random.Random(seed)
        fleet = cls(
            account_key=account_key,
            clock=clock or SimClock(),
            interval_s=interval_s,
            history_len=history_len,
        )
        if first_report is None and history_days is not None:
            first_report = fleet.history_start(history_days)
        gateway: SimGateway | None = None
        for i in range(n_meters):
            if i % per_gateway == 0:
                g = i // per_gateway
                secret = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijk0123456789", k=18))
                gateway = fleet.add_gateway(
                    SimGateway(
                        mac=f"4016fa{0x100000 + g:06x}",
                        name=f"Push3 {g + 1}",
                        key=gateway_key(70000000 + g, secret),
                    )
                )
            assert gateway is not None
            protocol = rng.choices(("v3", "v4", "v5"), weights=(2, 6, 2))[0]
            fleet.add_meter(
                SimMeter(
                    address=f"{300000000 + i + 1:012d}",
                    protocol=protocol,
                    gateway_mac=gateway.mac,
                    solar=rng.random() < 0.2,
                    base_load_w=rng.uniform(300, 1500),
                    initial_kwh=rng.uniform(100, 50000),
                    kwh_scale=rng.choice((0, 1, 2)),
                    lines=rng.choice((2, 2, 2, 3)),
                    seed=seed,
                    first_report=first_report,
                )
            )
        fleet.add_token(DEMO_API_TOKEN)
        return fleet

    # --- keys ------------------------------------------------------------------------------

    # An account key sees everything; a gateway key one Push3 and its meters (it is also
    # that gateway's MQTT key); a meter key (a landlord gives each tenant one) sees its
    # meter only: not the gateway, which would show the other tenants' meters and whose
    # MQTT key carries every meter's data, and it may not command the gateway (the
    # Settings and Trigger APIs answer 403). EKM does not document a meter key's exact
    # scope (ekm-cloud-api.md §1.2); this is the most plausible reading.

    def add_meter_key(self, key: str, address: str) -> None:
        """Give a meter a key of its own (a meter may have several)."""
        if address not in self.meters:
            raise KeyError(f"Unknown meter {address}")
        self.meter_keys[key] = address

    def key_type(self, key: str) -> str | None:
        """'account', 'gateway', 'meter', or None for an unknown or revoked key."""
        if not key or key in self.revoked_keys:
            return None
        if key == self.account_key:
            return "account"
        if any(gw.key == key for gw in self.gateways.values()):
            return "gateway"
        if key in self.meter_keys:
            return "meter"
        return None

    def gateways_for_key(self, key: str) -> list[SimGateway]:
        """Return the gateways a key may see (none for a meter key)."""
        kind = self.key_type(key)
        if kind == "account":
            return list(self.gateways.values())
        if kind == "gateway":
            return [gw for gw in self.gateways.values() if gw.key == key]
        return []

    def meters_for_key(self, key: str) -> list[str] | None:
        """Return the addresses a key may read (sorted); None if the key is not valid."""
        kind = self.key_type(key)
        if kind == "account":
            return sorted(self.meters)
        if kind == "gateway":
            return sorted(a for gw in self.gateways_for_key(key) for a in gw.meters)
        if kind == "meter":
            address = self.meter_keys[key]
            return [address] if address in self.meters else []
        return None

    def revoke(self, key: str) -> None:
        """Make a key or an API token invalid (the cloud answers 403)."""
        self.revoked_keys.add(key)

    def restore(self, key: str) -> None:
        """Undo :meth:`revoke`."""
        self.revoked_keys.discard(key)

    def add_token(
        self, token: str, *, write: bool = True, account_key: str | None = None
    ) -> SimToken:
        """Add (or replace) an API token, by default of this fleet's account."""
        sim_token = SimToken(token=token, write=write, account_key=account_key or self.account_key)
        self.api_tokens[token] = sim_token
        return sim_token

    def token(self, token: str | None) -> SimToken | None:
        """The API token, or None when it is missing, unknown or revoked."""
        if not token or token in self.revoked_keys:
            return None
        return self.api_tokens.get(token)

    # --- triggers ----------------------------------------------------------------------------

    def add_trigger(self, mac: str, trigger: dict[str, Any]) -> dict[str, Any]:
        """Store a trigger for a gateway (a new trigger_uuid unless it has one)."""
        uid = str(trigger.get("trigger_uuid") or uuid.uuid4().hex)
        stored = {"trigger_uuid": uid, "gateway": mac} | {
            k: v for k, v in trigger.items() if k not in ("trigger_uuid", "gateway")
        }
        self.triggers.setdefault(mac, {})[uid] = stored
        return stored

    def find_trigger(self, trigger_uuid: str) -> dict[str, Any] | None:
        """The stored trigger with this uuid, on any gateway."""
        for by_uuid in self.triggers.values():
            if trigger_uuid in by_uuid:
                return by_uuid[trigger_uuid]
        return None

    # --- time and reads ----------------------------------------------------------------------

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(batch)`` with each interval's new reads; returns unsubscribe."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def history(self, address: str) -> deque[Read]:
        """Return the stored reads of a meter, oldest first (at most 1,000)."""
        return self._history.setdefault(address, deque(maxlen=self.history_len))

    def latest(self, address: str) -> Read | None:
        """Return the newest stored read of a meter."""
        reads = self._history.get(address)
        return reads[-1] if reads else None

    def advance(self, seconds: float) -> ReadBatch:
        """Move the clock forward and generate the reads that became due."""
        return self.advance_to(self.clock.advance(seconds))

    def backfill(self, count: int) -> ReadBatch:
        """Generate ``count`` intervals of reads ending now (before the first advance)."""
        now = self.clock.now()
        self._last_boundary = (int(now // self.interval_s) - count) * self.interval_s
        return self.advance_to(now)

    def advance_to(self, now: float | None = None) -> ReadBatch:
        """Read every meter that reports (SimMeter.reports_at) at each boundary to ``now``."""
        # Listeners are called once per boundary with that boundary's reads.
        if now is None:
            now = self.clock.now()
        interval = self.interval_s
        last = int(now // interval) * interval
        if self._last_boundary is None:
            first = last
        else:
            first = self._last_boundary + interval
            first = max(first, last - (self.history_len - 1) * interval)
        produced: ReadBatch = []
        zone = _zone(self.timezone)
        for boundary in range(first, last + 1, interval):
            batch: ReadBatch = []
            meta = _read_meta(boundary * 1000, zone)
            for meter in self.meters.values():
                if not meter.reports_at(boundary):
                    meter.advance(boundary)
                    continue
                read = meta | meter.snapshot(boundary)
                self.history(meter.address).append(read)
                batch.append((meter, read))
            self._last_boundary = boundary
            if batch:
                self._notify(batch)
                produced += batch
        return produced

    def replace_registers(
        self, address: str, at: float | None = None, initial_kwh: float = 0.0
    ) -> SimMeter:
        """SimMeter.replace_registers, and rewrite the registers of stored reads after it."""
        meter = self.meters[address]
        at = self.clock.now() if at is None else at
        meter.replace_registers(at, initial_kwh)
        names = meter.register_names
        for read in self._history.get(address, ()):
            stamp = int(read["Time_Stamp_UTC_ms"]) / 1000
            if stamp >= at:
                read.update(meter.registers(stamp, names))
        return meter

    def set_gateway_online(self, mac: str, online: bool) -> SimGateway:
        """Set a gateway's GStat state (offline: last seen now; online: apply commands)."""
        gateway = self.gateways[mac]
        gateway.set_online(online, self.clock.now())
        if online:
            self.apply_commands(mac)
        return gateway

    def report_now(self, address: str) -> Read | None:
        """Read one meter now, out of the interval (what a gateway does after a command).

        The read is stamped max(now, last stored read + 1 ms), stored and sent to the
        listeners like an interval's reads; None when the meter does not report now.
        """
        meter = self.meters[address]
        now = self.clock.now()
        self.advance_to(now)  # earlier boundaries first: the history stays time-ordered
        if not meter.reports_at(now):
            return None
        history = self.history(address)
        stamp = int(now * 1000)
        if history:
            stamp = max(stamp, int(history[-1]["Time_Stamp_UTC_ms"]) + 1)
        read = _read_meta(stamp, _zone(self.timezone)) | meter.snapshot(stamp / 1000)
        history.append(read)
        self._notify([(meter, read)])
        return read

    # --- commands (Settings API) ---------------------------------------------------------------

    def queue_command(self, command: SimCommand) -> None:
        """Give a command to its gateway (applied once ready and the gateway is online)."""
        self.gateways[command.gateway].commands.append(command)

    def command_ready(self, command: SimCommand) -> list[SimCommand]:
        """Mark a command's delay as passed; returns the commands applied now."""
        command.ready = True
        return self.apply_commands(command.gateway)

    def apply_commands(self, mac: str) -> list[SimCommand]:
        """Apply a gateway's ready commands in order (none while it is offline)."""
        gateway = self.gateways[mac]
        done: list[SimCommand] = []
        while gateway.online and gateway.commands and gateway.commands[0].ready:
            command = gateway.commands.popleft()
            self._apply(command)
            done.append(command)
        return done

    def cancel_command(self, command: SimCommand) -> None:
        """Forget a command not applied yet."""
        gateway = self.gateways.get(command.gateway)
        if gateway is not None and command in gateway.commands:
            gateway.commands.remove(command)
        if command.outcome == QUEUED:
            command.outcome = CANCELLED

    def _apply(self, command: SimCommand) -> None:
        now = self.clock.now()
        command.applied_at = now
        meter = self.meters.get(command.meter)
        if meter is None or meter.gateway_mac != command.gateway or not meter.reports_at(now):
            command.outcome = NO_ANSWER
        elif not meter.supports_relays:
            command.outcome = IGNORED
        else:
            self.advance_to(now)  # reads before now keep the old relay state
            meter.set_relay(command.relay, command.closed, command.duration_s)
            command.outcome = APPLIED
            self.report_now(meter.address)

    def _notify(self, batch: ReadBatch) -> None:
        for listener in list(self._listeners):
            try:
                listener(batch)
            except Exception:
                _LOGGER.exception("Fleet listener failed")

    def all_addresses(self) -> Iterable[str]:
        """Every meter address, sorted."""
        return sorted(self.meters)


def demo_trigger(gateway: SimGateway) -> dict[str, Any]:
    """The trigger demo() seeds on a gateway (a fixed trigger_uuid per MAC)."""
    # Every field but trigger_uuid and trigger_name is the simulator's invention: EKM's
    # trigger schema is unknown (ekm-cloud-api.md §7). The Trigger API keeps any fields.
    meter = gateway.meters[0] if gateway.meters else ""
    return {
        "trigger_uuid": uuid.uuid5(uuid.NAMESPACE_URL, f"ekmsim:trigger:{gateway.mac}").hex,
        "trigger_name": "Shed water heater at peak",
        "enabled": True,
        "condition": {"meter": meter, "field": "RMS_Watts_Tot", "operator": ">", "value": 5000},
        "action": {
            "type": "relay",
            "meter": meter,
            "relay": "relay_1",
            "status": "open",
            "duration": 900,
        },
        "recurrence": None,
    }


async def run_ticker(
    fleet: Fleet, period_s: float = 1.0, stop: asyncio.Event | None = None
) -> None:
    """Advance the fleet to its clock every ``period_s`` until ``stop`` is set."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        fleet.advance_to()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)


def _read_meta(stamp_ms: int, zone: tzinfo) -> Read:
    """The fields every stored read starts with (its local Date and Time in ``zone``)."""
    local = datetime.fromtimestamp(stamp_ms / 1000, zone)
    return {
        "Good": 1,
        "Date": local.strftime("%Y-%m-%d"),
        "Time": local.strftime("%H:%M:%S"),
        "Time_Stamp_UTC_ms": stamp_ms,
    }


_ZONES: dict[str, tzinfo] = {}


def _zone(name: str) -> tzinfo:
    """Return a cached ZoneInfo ('UTC' and EKM's 'Area~City' form accepted)."""
    zone = _ZONES.get(name)
    if zone is None:
        zone = UTC if name.upper() == "UTC" else ZoneInfo(name.replace("~", "/"))
        _ZONES[name] = zone
    return zone


__all__ = [
    "DEMO_ACCOUNT_KEY",
    "DEMO_API_TOKEN",
    "DEMO_GARAGE_MAC",
    "DEMO_GATEWAY_KEY",
    "DEMO_GATEWAY_MAC",
    "DEMO_GRID_METER",
    "DEMO_LAN_KEY",
    "DEMO_METER",
    "DEMO_METER_KEY",
    "DEMO_NAMES",
    "DEMO_SOLAR_METER",
    "DEMO_SUBPANEL_METER",
    "DEMO_THREE_PHASE_METER",
    "DEMO_WATER_GAL_PER_PULSE",
    "DEMO_WATER_HEATER_METER",
    "DEMO_WATER_PULSES_PER_DAY",
    "ORIGIN",
    "REGISTERS",
    "DayTable",
    "Fleet",
    "Read",
    "ReadBatch",
    "RegisterModel",
    "SimClock",
    "SimCommand",
    "SimGateway",
    "SimMeter",
    "SimToken",
    "day_table",
    "default_first_report",
    "demo_trigger",
    "gateway_key",
    "lan_key",
    "meter_key",
    "meter_time_text",
    "run_ticker",
]
