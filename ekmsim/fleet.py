"""The simulated EKM world: meters, Push3 gateways, keys and a clock."""

# One Fleet is what every simulated transport presents: the cloud APIs (ekmsim.cloud),
# the MQTT publisher and the virtual RS-485 meters. Meters are physical models: their
# registers integrate power over time, so totals only grow; a daily load curve drives the
# power, solar meters export in daylight.
#
# SimMeter.snapshot() returns *normalized* values (EKM field names, kWh as floats at the
# meter's resolution, volts in V, ...); each transport encodes them in its wire format.

from __future__ import annotations

import asyncio
import base64
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
from typing import Final
from zoneinfo import ZoneInfo

_LOGGER = logging.getLogger(__name__)

type Value = float | int | str
type Read = dict[str, Value]
type ReadBatch = list[tuple[SimMeter, Read]]
type Listener = Callable[[ReadBatch], None]

DEMO_ACCOUNT_KEY: Final = "MTAxMDoyMDIw"
DEMO_GATEWAY_MAC: Final = "4016fa0500cd"
DEMO_GATEWAY_KEY: Final = "NjUyNjk0MzY6KDkkPVtXLUpQZyFmaDBrYTlJ"
DEMO_METER: Final = "000000010389"
HISTORY_LEN: Final = 1000  # EKM keeps the 1,000 latest reads per meter

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
_MAX_STEP_S: Final = 300.0  # integration sub-step
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


def gateway_key(gateway_id: int, secret: str) -> str:
    """Make a Push3-style gateway key: unpadded base64 of ``id:secret``."""
    return base64.b64encode(f"{gateway_id}:{secret}".encode()).decode().rstrip("=")


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


@dataclass(eq=False, kw_only=True)
class SimMeter:
    """One simulated Omnimeter; see the module docstring."""

    address: str
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
    # Physics knobs.
    lines: int = 2  # 2: split-phase 120/240 V (line 3 idle); 3: three-phase 120/208 V
    base_load_w: float = 700.0
    solar_peak_w: float = 5000.0
    power_factor: float = 0.95  # lagging
    utc_offset_s: int = -5 * 3600  # local time for the load curve and Meter_Time
    initial_kwh: float = 1500.0
    seed: int = 0
    clock: SimClock | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in MODEL_BY_PROTOCOL:
            raise ValueError(f"Unknown protocol {self.protocol!r}")
        if len(self.address) != 12 or not self.address.isdigit():
            raise ValueError("A meter address is 12 digits")
        self.model = self.model or MODEL_BY_PROTOCOL[self.protocol]
        self.firmware = self.firmware or FIRMWARE_BY_PROTOCOL[self.protocol]
        self._rng = random.Random(f"{self.seed}:{self.address}")
        share = self._shares()
        rev0 = self.initial_kwh * 0.35 if self.solar else 0.0
        self._fwd = [self.initial_kwh * s for s in share]
        self._rev = [rev0 * s for s in share]
        self._tariff_fwd = [self.initial_kwh * s for s in (0.4, 0.45, 0.15, 0.0)]
        self._tariff_rev = [rev0 * s for s in (0.0, 0.9, 0.1, 0.0)]
        self._rst_fwd = self.initial_kwh * 0.1
        self._rst_rev = rev0 * 0.1
        self._kvarh = self.initial_kwh * 0.3
        self._pulses = [float(self._rng.randrange(1000, 50000)) for _ in range(3)]
        self._pulse_rates = [0.05, 0.01, 0.002]  # pulses per second at the mean load
        self._max_demand = self.base_load_w * 2.0
        self._demand_key: int | None = None
        self._relay_until: list[float | None] = [None, None]
        self._last_t: float | None = None
        self._tan_phi = math.tan(math.acos(self.power_factor))

    # --- physics -----------------------------------------------------------------------

    def _shares(self) -> tuple[float, float, float]:
        return (0.55, 0.45, 0.0) if self.lines == 2 else (0.36, 0.33, 0.31)

    def _local_hour(self, t: float) -> float:
        return ((t + self.utc_offset_s) % 86400) / 3600

    def load_factor(self, t: float) -> float:
        """Return the daily load curve: a base, a breakfast and a larger evening peak."""
        h = self._local_hour(t)
        return (
            0.6
            + 1.2 * math.exp(-(((h - 7.5) / 1.2) ** 2))
            + 1.8 * math.exp(-(((h - 19.0) / 2.0) ** 2))
        )

    def solar_w(self, t: float) -> float:
        """Solar production (W), 0 at night or without panels."""
        h = self._local_hour(t)
        if not self.solar or not 6.0 < h < 18.0:
            return 0.0
        return self.solar_peak_w * math.sin(math.pi * (h - 6.0) / 12.0)

    def line_power(self, t: float) -> list[float]:
        """Signed power per line (W): positive imports, negative exports."""
        load = self.base_load_w * self.load_factor(t)
        shares = self._shares()
        active = 2 if self.lines == 2 else 3
        pv = self.solar_w(t) / active
        return [load * s - (pv if s else 0.0) for s in shares]

    def _tariff(self, t: float) -> int:
        h = self._local_hour(t)
        if 7.0 <= h < 17.0:
            return 1
        if 17.0 <= h < 22.0:
            return 2
        return 0

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

    def _integrate(self, now: float) -> None:
        """Accumulate energy, pulses and demand up to ``now`` (never backwards)."""
        for i, until in enumerate(self._relay_until):
            if until is not None and until <= now:
                self.relays[i] = not self.relays[i]
                self._relay_until[i] = None
        if self._last_t is None:
            self._last_t = now
            return
        t = self._last_t
        while t < now:
            step = min(_MAX_STEP_S, now - t)
            mid = t + step / 2
            powers = self.line_power(mid)
            hours = step / 3600
            tariff = self._tariff(mid)
            total = 0.0
            for i, p in enumerate(powers):
                kwh = abs(p) * hours / 1000
                if p >= 0:
                    self._fwd[i] += kwh
                    self._tariff_fwd[tariff] += kwh
                    self._rst_fwd += kwh
                else:
                    self._rev[i] += kwh
                    self._tariff_rev[tariff] += kwh
                    self._rst_rev += kwh
                self._kvarh += kwh * self._tan_phi
                total += abs(p)
            factor = self.load_factor(mid)
            for i, rate in enumerate(self._pulse_rates):
                self._pulses[i] += rate * factor * step
            key = self._demand_period_key(mid)
            if key != self._demand_key:
                if self._demand_key is not None:
                    self._max_demand = 0.0
                self._demand_key = key
            self._max_demand = max(self._max_demand, total)
            t += step
        self._last_t = now

    def advance(self, now: float) -> None:
        """Integrate up to ``now`` without taking a snapshot."""
        self._integrate(now)

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

    def snapshot(self, now: float | None = None) -> Read:
        """Return the meter's normalized values at ``now`` (integrating up to it first)."""
        if now is None:
            now = self._now()
        self._integrate(now)
        rnd = self._rng.random
        digits = self.kwh_decimals
        unit = 10.0**digits
        floor = math.floor

        def kwh(value: float) -> float:
            return round(floor(value * unit + 1e-9) / unit, digits)

        fwd, rev = self._fwd, self._rev
        powers = [p * (0.98 + 0.04 * rnd()) for p in self.line_power(now)]
        watts = [round(abs(p)) for p in powers]
        volts = [round(118.5 + 3 * rnd(), 1) if s else 0.0 for s in self._shares()]
        pf_code = round(self.power_factor * 100)
        codes = [pf_code if w else 200 for w in watts]  # an idle line reads C000
        pulses = [int(p) for p in self._pulses]
        pf = self.power_factor
        values: Read = {
            "Model": self.model,
            "Firmware": self.firmware,
            "kWh_Tot": kwh(sum(fwd) + sum(rev)),
            "Rev_kWh_Tot": kwh(sum(rev)),
            "RMS_Watts_Tot": sum(watts),
            "RMS_Watts_Max_Demand": round(self._max_demand, 1),
            "Max_Demand_Period": self.max_demand_period,
            "Meter_Time": meter_time_text(now + self.meter_time_offset, self.utc_offset_s),
            "CT_Ratio": self.ct_ratio,
            # Input levels follow the pulses: In1 low = bit 2, In2 = bit 1, In3 = bit 0.
            "State_Inputs": (pulses[0] & 1) << 2 | (pulses[1] & 1) << 1 | (pulses[2] & 1),
        }
        for i in range(3):
            values[_VOLTS[i]] = volts[i]
            values[_AMPS[i]] = round(watts[i] / (volts[i] * pf), 1) if volts[i] else 0.0
            values[_WATTS[i]] = watts[i]
            values[_COS[i]] = _COS_TEXT[codes[i]]
            values[_PF[i]] = codes[i]
            values[_PULSES[i]] = pulses[i]
            values[_PULSE_RATIOS[i]] = self.pulse_ratios[i]
        for t in range(4):
            values[_TARIFF[t]] = kwh(self._tariff_fwd[t] + self._tariff_rev[t])
            values[_REV_TARIFF[t]] = kwh(self._tariff_rev[t])
        if self.protocol == "v3":
            values["kWh_Scale"] = 1
            values["Meter_Status_Code"] = "00"
            return values
        var = [round(w * self._tan_phi) for w in watts]
        for i in range(3):
            values[_KWH_LN[i]] = kwh(fwd[i] + rev[i])
            values[_REV_KWH_LN[i]] = kwh(rev[i])
            values[_VAR[i]] = var[i]
            values[_STATUS[i]] = "0"
        direction = "".join("R" if p < 0 and w else "F" for p, w in zip(powers, watts, strict=True))
        values |= {
            "Reactive_Energy_Tot": kwh(self._kvarh),
            "kWh_Rst": kwh(self._rst_fwd + self._rst_rev),
            "Rev_kWh_Rst": kwh(self._rst_rev),
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
        self._integrate(now)
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
        """Clear kWh_Rst and Rev_kWh_Rst (v4/v5)."""
        self._integrate(self._now())
        self._rst_fwd = self._rst_rev = 0.0

    def reset_max_demand(self) -> None:
        """Clear RMS_Watts_Max_Demand."""
        self._integrate(self._now())
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


@dataclass(eq=False, kw_only=True)
class SimGateway:
    """A Push3 gateway: lowercase 12-hex MAC, name, its key and its meters."""

    mac: str
    name: str
    key: str
    meters: list[str] = field(default_factory=list)


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
    revoked_keys: set[str] = field(default_factory=set)
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
    def demo(cls, *, clock: SimClock | None = None, interval_s: int = 60) -> Fleet:
        """Build EKM's demo account: the demo keys and five meters of every kind."""
        # 000000010389 v4 (the demo meter) and 000000010388 v3 on the demo gateway
        # 4016fa0500cd (key DEMO_GATEWAY_KEY); 000000015635 v5 and 000000000099 v4 solar
        # on gateway 4016fa010226; 000300000001 v4, three-phase, on no gateway.
        fleet = cls(clock=clock or SimClock(), interval_s=interval_s)
        fleet.add_gateway(SimGateway(mac=DEMO_GATEWAY_MAC, name="Demo Push3", key=DEMO_GATEWAY_KEY))
        fleet.add_gateway(
            SimGateway(
                mac="4016fa010226", name="Garage Push3", key=gateway_key(65269437, "Sim-Key-2!")
            )
        )
        for meter in (
            SimMeter(address=DEMO_METER, protocol="v4", gateway_mac=DEMO_GATEWAY_MAC),
            SimMeter(
                address="000000010388",
                protocol="v3",
                gateway_mac=DEMO_GATEWAY_MAC,
                initial_kwh=8000.0,
            ),
            SimMeter(
                address="000000015635",
                protocol="v5",
                gateway_mac="4016fa010226",
                kwh_scale=1,
                relays=[True, False],
            ),
            SimMeter(
                address="000000000099",
                protocol="v4",
                gateway_mac="4016fa010226",
                solar=True,
                initial_kwh=4000.0,
            ),
            SimMeter(address="000300000001", protocol="v4", lines=3, kwh_scale=0, ct_ratio=1500),
        ):
            fleet.add_meter(meter)
        return fleet

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
    ) -> Fleet:
        """Build a deterministic fleet of 1..1000 meters, ``per_gateway`` per gateway."""
        if not 1 <= n_meters <= 1000 or not 1 <= per_gateway <= 32:
            raise ValueError("1..1000 meters, 1..32 per gateway")
        rng = random.Random(seed)
        fleet = cls(
            account_key=account_key,
            clock=clock or SimClock(),
            interval_s=interval_s,
            history_len=history_len,
        )
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
                )
            )
        return fleet

    # --- keys ------------------------------------------------------------------------------

    def key_type(self, key: str) -> str | None:
        """'account', 'gateway', or None for an unknown or revoked key."""
        if not key or key in self.revoked_keys:
            return None
        if key == self.account_key:
            return "account"
        if any(gw.key == key for gw in self.gateways.values()):
            return "gateway"
        return None

    def gateways_for_key(self, key: str) -> list[SimGateway]:
        """Return the gateways a key may see."""
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
        return None

    def revoke(self, key: str) -> None:
        """Make a key invalid (the cloud answers 403)."""
        self.revoked_keys.add(key)

    def restore(self, key: str) -> None:
        """Undo :meth:`revoke`."""
        self.revoked_keys.discard(key)

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
        """Read every responsive meter at each interval boundary up to ``now``."""
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
            local = datetime.fromtimestamp(boundary, zone)
            meta: Read = {
                "Good": 1,
                "Date": local.strftime("%Y-%m-%d"),
                "Time": local.strftime("%H:%M:%S"),
                "Time_Stamp_UTC_ms": boundary * 1000,
            }
            for meter in self.meters.values():
                if not meter.responsive:
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

    def _notify(self, batch: ReadBatch) -> None:
        for listener in list(self._listeners):
            try:
                listener(batch)
            except Exception:
                _LOGGER.exception("Fleet listener failed")

    def all_addresses(self) -> Iterable[str]:
        """Every meter address, sorted."""
        return sorted(self.meters)


async def run_ticker(
    fleet: Fleet, period_s: float = 1.0, stop: asyncio.Event | None = None
) -> None:
    """Advance the fleet to its clock every ``period_s`` until ``stop`` is set."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        fleet.advance_to()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)


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
    "DEMO_GATEWAY_KEY",
    "DEMO_GATEWAY_MAC",
    "DEMO_METER",
    "Fleet",
    "Read",
    "ReadBatch",
    "SimClock",
    "SimGateway",
    "SimMeter",
    "gateway_key",
    "meter_time_text",
    "run_ticker",
]
