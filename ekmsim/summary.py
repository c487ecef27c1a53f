"""The simulated EKM Summary API: legacy Summary, Summary V2 meter, First/Last and GStat.

Rows are computed, not stored: each meter's lifetime registers are functions of time
(ekmsim.fleet.RegisterModel), evaluated at the period boundaries; instantaneous averages
come from energy over time, their minimum, maximum and deviation from the day table's
slots (consistent, never random). The wire contract (fixed, shared with pyekm):

``GET /summary?key&meters=a~b&report=R&start_date=YYYYMMDDhhmm&end_date=...&timezone=Area~City
&fields=f1~f2*&limit=N&offset=M&format=json`` (legacy) and ``GET /summary/api/v2/meter`` with
``devices=`` (V2), both served by ekmsim.cloud:

* ``report``: ``15``, ``hr``, ``dy``, ``wk`` (local Sunday midnight), ``mo`` (the 1st) or
  ``range`` (one row per meter for the whole window); boundaries on the local clock of
  ``timezone`` (default UTC). ``start_date`` inclusive, ``end_date`` exclusive, wall times in
  ``timezone``: an ambiguous one means its first occurrence, a skipped one the instant the
  clock jumps to.
* Every period overlapping the window is a row (whole periods), newest period first,
  meters ascending within a period; the in-progress period ends at the newest read, the
  one holding a meter's first report starts at it; periods without reads are absent.
* Registers get ``_First``, ``_Last``, ``_Min``, ``_Max``, ``_Diff`` (Last - First, after
  quantizing to the meter's resolution, so Diffs telescope exactly) and ``_DeltaMax``;
  instantaneous fields ``_Average``, ``_StdDev``, ``_Min``, ``_Max``. ``fields`` takes names
  and ``*`` wildcards. Legacy: ``Meter`` a 12-digit string and values numeric strings;
  V2: JSON numbers.
* ``limit`` (default and cap 1000) and ``offset`` page the full newest-first row list; an
  offset past the end gives ``[]``.
* No rows: an EKM status (1000 no data at all, 1001 none in the window, 1002 window before
  the first report, 1003 after the last); bad arguments: HTTP 200 ``text/plain`` starting
  with ``Error`` (:class:`SummaryError`).

``GET /summary/api/v2/firstlast?key&devices=a~b`` lists each meter's first and last read,
``GET /summary/api/v2/gstat?key&gateways=mac~mac`` each gateway's online state. The paths
of these two are inferred (EKM does not publish them).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
import functools
import math
import re
from typing import Any, Final
from zoneinfo import ZoneInfo

from .fleet import (
    POWER_ENERGY_CHANNEL,
    REGISTER_INDEX,
    SLOT_S,
    SLOTS,
    DayTable,
    Fleet,
    RegisterModel,
    SimGateway,
    SimMeter,
)

REPORTS: Final = ("15", "hr", "dy", "wk", "mo", "range")
MAX_LIMIT: Final = 1000
_LN = (1, 2, 3)
# The registers and instantaneous fields of a summary row, in row order (a meter gets
# those it reports).
SUMMARY_REGISTERS: Final = (
    "kWh_Tot", "Rev_kWh_Tot",
    *(f"kWh_Tariff_{t}" for t in (1, 2, 3, 4)), *(f"Rev_kWh_Tariff_{t}" for t in (1, 2, 3, 4)),
    *(f"kWh_Ln_{n}" for n in _LN), *(f"Rev_kWh_Ln_{n}" for n in _LN),
    "kWh_Rst", "Rev_kWh_Rst", "Reactive_Energy_Tot", *(f"Pulse_Cnt_{n}" for n in _LN),
)  # fmt: skip
REGISTER_STATS: Final = ("First", "Last", "Min", "Max", "Diff", "DeltaMax")
INSTANT_FIELDS: Final = (
    *(f"RMS_Volts_Ln_{n}" for n in _LN), *(f"Amps_Ln_{n}" for n in _LN),
    *(f"RMS_Watts_Ln_{n}" for n in _LN), "RMS_Watts_Tot",
    *(f"Power_Factor_Ln_{n}" for n in _LN), *(f"Reactive_Pwr_Ln_{n}" for n in _LN),
    "Reactive_Pwr_Tot", "Line_Freq",
)  # fmt: skip
INSTANT_STATS: Final = ("Average", "StdDev", "Min", "Max")
IDENTITY_FIELDS: Final = (
    "Meter", "Protocol", "Count", "Start_Time_Stamp_UTC_ms", "End_Time_Stamp_UTC_ms",
    "Start_Date", "End_Date",
)  # fmt: skip
ROW_DATE_FORMAT: Final = "%Y-%m-%d %H:%M"
_QUERY_DATE_FORMAT: Final = "%Y%m%d%H%M"

# The snapshot's noise (ekmsim.fleet.SimMeter.snapshot): watts x U(0.98, 1.02), volts
# U(118.5, 121.5) on a live line, the line frequency U(59.98, 60.02).
_WATT_NOISE: Final = 0.02
_NOISE_VAR: Final = (2 * _WATT_NOISE) ** 2 / 12
_VOLTS_STATS: Final = (120.0, 3 / math.sqrt(12), 118.5, 121.5)
_FREQ_STATS: Final = (60.0, 0.04 / math.sqrt(12), 59.98, 60.02)
_NOMINAL_VOLTS: Final = 120.0
_W_PER_KWH_SLOT: Final = 3_600_000 / SLOT_S  # one slot's kWh -> mean watts
# Shortest period of each report: with a longer data interval some periods hold no read.
_SHORTEST_S: Final = {"15": 900, "hr": 1800, "dy": 82800, "wk": 601200, "mo": 2415600}

HELP: Final = """\
Error: {problem}
Parameters (EKM Summary API, simulated):
  key         account, gateway or meter key
  {meters:<11} meter numbers joined with ~ (leading zeros optional)
  report      15 | hr | dy | wk | mo | range
  start_date  YYYYMMDDhhmm, local to timezone, inclusive
  end_date    YYYYMMDDhhmm, local to timezone, exclusive (after start_date)
  timezone    Area~City (default UTC)
  fields      names or wildcards joined with ~ (kWh_Tot*, *_Diff); default: all
  limit       1..1000 rows (default 1000), offset >= 0 (default 0)
  format      json
"""


class SummaryError(ValueError):
    """A bad argument: EKM answers HTTP 200 text/plain, ``Error`` and the parameters."""

    def __init__(self, problem: str, *, v2: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.v2 = v2

    def body(self) -> str:
        """The plain-text answer."""
        return HELP.format(problem=self.problem, meters="devices" if self.v2 else "meters")


@dataclass(frozen=True, slots=True)
class NoData:
    """An EKM status code instead of rows (code and message details)."""

    code: int
    details: dict[str, str]


@dataclass(frozen=True, slots=True)
class SummaryQuery:
    """A validated Summary request (times in UTC epoch seconds)."""

    meters: tuple[str, ...]
    report: str
    start: float
    end: float
    zone: tzinfo
    fields: tuple[str, ...] | None
    limit: int = MAX_LIMIT
    offset: int = 0


# --- query --------------------------------------------------------------------------------


def parse_addresses(text: str | None, what: str, *, v2: bool = False) -> tuple[str, ...]:
    """``~``-joined meter numbers, padded to 12 digits; SummaryError when none or bad."""
    parts = [p.strip() for p in (text or "").split("~") if p.strip()]
    if not parts:
        raise SummaryError(f"{what} is required", v2=v2)
    for part in parts:
        if not part.isdigit() or len(part) > 12:
            raise SummaryError(f"{what}: {part!r} is not a meter number", v2=v2)
    return tuple(dict.fromkeys(p.zfill(12) for p in parts))


def parse_zone(text: str | None, *, v2: bool = False) -> tzinfo:
    """``Area~City`` (or ``Area/City``, ``UTC``) as a time zone; SummaryError if unknown."""
    name = (text or "UTC").strip().replace("~", "/")
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for odd keys
        raise SummaryError(f"timezone {text!r} is not supported", v2=v2) from None


def parse_summary_query(query: Mapping[str, str], *, v2: bool) -> SummaryQuery:
    """Validate a Summary request; raises SummaryError (the plain-text answer)."""
    if query.get("format", "json").lower() != "json":
        raise SummaryError("format: only json is simulated", v2=v2)
    name = "devices" if v2 else "meters"
    text = query.get("devices", query.get("meters")) if v2 else query.get("meters")
    meters = parse_addresses(text, name, v2=v2)
    report = query.get("report", "")
    if report not in REPORTS:
        raise SummaryError(f"report {report!r} is not one of {', '.join(REPORTS)}", v2=v2)
    zone = parse_zone(query.get("timezone"), v2=v2)
    start = local_to_utc(_parse_date(query, "start_date", v2), zone)
    end = local_to_utc(_parse_date(query, "end_date", v2), zone)
    if end <= start:
        raise SummaryError("end_date must be after start_date", v2=v2)
    # EKM inference: fields are ~-joined; one client used commas, accepted here too.
    fields = query.get("fields", "").replace(",", "~").split("~")
    patterns = tuple(f.strip() for f in fields if f.strip())
    return SummaryQuery(
        meters=meters,
        report=report,
        start=start,
        end=end,
        zone=zone,
        fields=patterns or None,
        limit=min(_parse_int(query, "limit", MAX_LIMIT, 1, v2), MAX_LIMIT),
        offset=_parse_int(query, "offset", 0, 0, v2),
    )


def _parse_date(query: Mapping[str, str], name: str, v2: bool) -> datetime:
    text = query.get(name, "").strip()
    if len(text) != 12 or not text.isdigit():
        raise SummaryError(f"{name} must be YYYYMMDDhhmm", v2=v2)
    try:
        return datetime.strptime(text, _QUERY_DATE_FORMAT)
    except ValueError:
        raise SummaryError(f"{name} {text!r} is not a date", v2=v2) from None


def _parse_int(query: Mapping[str, str], name: str, default: int, low: int, v2: bool) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise SummaryError(f"{name} must be a whole number", v2=v2) from None
    if value < low:
        raise SummaryError(f"{name} must be at least {low}", v2=v2)
    return value


# --- time -------------------------------------------------------------------------------------


def _offset(zone: tzinfo, t: float) -> float:
    delta = datetime.fromtimestamp(t, zone).utcoffset()
    return delta.total_seconds() if delta is not None else 0.0


def local_to_utc(wall: datetime, zone: tzinfo) -> float:
    """A naive wall time in ``zone`` as epoch seconds.

    EKM inference (contract): an ambiguous time (fall back) is its FIRST occurrence, a
    skipped one (spring forward) the instant the clock jumps to.
    """
    if zone is UTC:
        return wall.replace(tzinfo=UTC).timestamp()
    first = wall.replace(tzinfo=zone, fold=0).timestamp()  # the earlier offset
    if datetime.fromtimestamp(first, zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 uses the offset before the jump (too late an instant), fold=1 the
    # one after (too early); the jump lies between. Find its second.
    other = wall.replace(tzinfo=zone, fold=1).timestamp()
    lo, hi = math.floor(min(first, other)), math.ceil(max(first, other))
    after = _offset(zone, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, mid) == after:
            hi = mid
        else:
            lo = mid
    return float(hi)


def format_local(t: float, zone: tzinfo) -> str:
    """``YYYY-MM-DD HH:MM`` in ``zone``."""
    return datetime.fromtimestamp(t, zone).strftime(ROW_DATE_FORMAT)


def _offset_runs(zone: tzinfo, lo: int, hi: int) -> list[tuple[int, float]]:
    """(start, UTC offset) of the stretches of constant offset over [lo, hi]."""
    runs = [(lo, _offset(zone, lo))]
    if zone is UTC:
        return runs
    probe = 6 * 3600  # tz transitions are months apart: probe, then bisect the second
    t = lo
    while t < hi:
        nxt = min(t + probe, hi)
        current = runs[-1][1]
        if _offset(zone, nxt) == current:
            t = nxt
            continue
        a, b = t, nxt
        while b - a > 1:
            mid = (a + b) // 2
            if _offset(zone, mid) == current:
                a = mid
            else:
                b = mid
        runs.append((b, _offset(zone, b)))
        t = b
    return runs


@functools.lru_cache(maxsize=256)
def period_bounds(report: str, zone: tzinfo, start: float, end: float) -> tuple[float, ...]:
    """UTC boundaries b0 <= start < ... < bP >= end of the periods covering [start, end)."""
    if report == "range":
        return (start, end)
    if report in ("15", "hr"):
        return _clock_bounds(zone, 900 if report == "15" else 3600, start, end)
    return _calendar_bounds(report, zone, start, end)


def _clock_bounds(zone: tzinfo, step: int, start: float, end: float) -> tuple[float, ...]:
    # Quarter hours / hours of the local clock: within a stretch of constant offset they
    # are every ``step`` seconds in UTC too, so a repeated or skipped local hour (DST) is
    # neither lost nor doubled in UTC.
    lo, hi = math.floor(start) - step, math.ceil(end) + step
    runs = _offset_runs(zone, lo, hi)
    out: list[float] = []
    for i, (t0, off) in enumerate(runs):
        t1 = runs[i + 1][0] if i + 1 < len(runs) else hi
        first, stop = math.ceil((t0 + off) / step), math.ceil((t1 + off) / step)
        out.extend(k * step - off for k in range(first, stop))
    i = max(0, bisect.bisect_right(out, start) - 1)
    j = bisect.bisect_left(out, end)
    return tuple(out[i : j + 1])


def _calendar_bounds(report: str, zone: tzinfo, start: float, end: float) -> tuple[float, ...]:
    # Local midnights: every day, Sundays (EKM's weeks start on Sunday [INF]) or 1sts.
    day = datetime.fromtimestamp(start, zone).date()
    if report == "wk":
        day -= timedelta(days=(day.weekday() + 1) % 7)
    elif report == "mo":
        day = day.replace(day=1)
    t = _midnight(day, zone)
    while t > start:  # a midnight moved by DST
        day = _step_date(report, day, -1)
        t = _midnight(day, zone)
    out = [t]
    while t < end:
        day = _step_date(report, day, 1)
        t = _midnight(day, zone)
        out.append(t)
    return tuple(out)


def _midnight(day: date, zone: tzinfo) -> float:
    return local_to_utc(datetime(day.year, day.month, day.day), zone)


def _step_date(report: str, day: date, sign: int) -> date:
    if report == "dy":
        return day + timedelta(days=sign)
    if report == "wk":
        return day + timedelta(days=7 * sign)
    month = day.year * 12 + day.month - 1 + sign
    return date(month // 12, month % 12 + 1, 1)


# --- fields ---------------------------------------------------------------------------------

# A plan: which registers and instantaneous fields a row holds, and under which keys.
type RegisterPlan = tuple[tuple[str, int, tuple[tuple[str, int], ...]], ...]
type InstantPlan = tuple[tuple[str, tuple[tuple[str, int], ...]], ...]


@functools.lru_cache(maxsize=512)
def field_plan(
    registers: tuple[str, ...], instants: tuple[str, ...], patterns: tuple[str, ...] | None
) -> tuple[RegisterPlan, InstantPlan]:
    """The output keys for a meter's fields that match ``patterns`` (None: all).

    ``*`` matches any run of characters (``kWh_Tot*``: every kWh_Tot suffix; ``*_Diff``:
    every difference); other names match exactly.
    """
    regex = None
    if patterns is not None:
        regex = re.compile("|".join(re.escape(p).replace(r"\*", ".*") for p in patterns))

    def wanted(key: str) -> bool:
        return regex is None or regex.fullmatch(key) is not None

    reg_plan = []
    for name in SUMMARY_REGISTERS:
        if name in registers:
            keys = tuple(
                (f"{name}_{stat}", i)
                for i, stat in enumerate(REGISTER_STATS)
                if wanted(f"{name}_{stat}")
            )
            if keys:
                reg_plan.append((name, REGISTER_INDEX[name], keys))
    inst_plan = []
    for name in INSTANT_FIELDS:
        if name in instants:
            keys = tuple(
                (f"{name}_{stat}", i)
                for i, stat in enumerate(INSTANT_STATS)
                if wanted(f"{name}_{stat}")
            )
            if keys:
                inst_plan.append((name, keys))
    return tuple(reg_plan), tuple(inst_plan)


# --- a meter's reads ----------------------------------------------------------------------------


def _outages(meter: SimMeter) -> list[tuple[float, float]]:
    """(start, end) of every outage, the current one ending at +inf."""
    spans = meter.outages
    if meter.unresponsive_since is not None:
        spans.append((meter.unresponsive_since, math.inf))
    return sorted(spans)


def data_span(meter: SimMeter, interval_s: int, now: float) -> tuple[float, float] | None:
    """The first and last read times of a meter (interval grid), None without any read."""
    assert meter.first_report is not None
    outages = _outages(meter)
    first = math.ceil(meter.first_report / interval_s) * interval_s
    for start, end in outages:
        if start < first <= end:
            if end == math.inf:
                return None
            first = (math.floor(end / interval_s) + 1) * interval_s
    limit = min(now, meter.reporting_end())
    if limit < first:
        return None
    last = math.floor(limit / interval_s) * interval_s
    for start, end in reversed(outages):
        if start < last <= end:
            if start == -math.inf:
                return None
            last = math.floor(start / interval_s) * interval_s
    if last < first:
        return None
    return float(first), float(last)


def _read_count(
    outages: Sequence[tuple[float, float]], iv: int, lo: float, hi: float, *, inclusive: bool
) -> int:
    """Reads on the grid in [lo, hi) (or [lo, hi]) outside the outages."""
    a = math.ceil(lo / iv)
    b = math.floor(hi / iv) if inclusive else math.ceil(hi / iv) - 1
    n = b - a + 1
    for start, end in outages:
        sa = a if start == -math.inf else max(a, math.floor(start / iv) + 1)
        eb = b if end == math.inf else min(b, math.floor(end / iv))
        if eb >= sa:
            n -= eb - sa + 1
    return max(n, 0)


@functools.lru_cache(maxsize=65536)
def _slot_extremes(table: DayTable, channel: int, first: int, span: int) -> tuple[float, float]:
    return table.slot_increase(channel, first, first + span)


class _Track:
    """One meter over a request's periods: which periods hold rows, and the rows."""

    __slots__ = (
        "address",
        "bounds",
        "empty",
        "first",
        "hi",
        "interval_s",
        "last",
        "live",
        "lo",
        "meter",
        "model",
        "outages",
        "pf_code",
        "protocol",
        "tan_phi",
        "unit",
        "volts_factor",
    )

    def __init__(
        self,
        meter: SimMeter,
        span: tuple[float, float],
        bounds: Sequence[float],
        interval_s: int,
        shortest_s: float,
    ) -> None:
        self.meter = meter
        self.address = meter.address
        self.protocol = "v3" if meter.protocol == "v3" else "v4"  # v5 reports as v4
        self.model: RegisterModel = meter.register_model
        self.first, self.last = span
        self.bounds = bounds
        self.interval_s = interval_s
        self.outages = [(s, e) for s, e in _outages(meter) if e >= self.first and s <= self.last]
        self.unit = 10.0**meter.kwh_decimals
        shares = (0.55, 0.45, 0.0) if meter.lines == 2 else (0.36, 0.33, 0.31)
        self.live = tuple(s > 0 for s in shares)
        self.tan_phi = math.tan(math.acos(meter.power_factor))
        self.volts_factor = 1 / (_NOMINAL_VOLTS * meter.power_factor)
        self.pf_code = round(meter.power_factor * 100)
        periods = len(bounds) - 1
        self.lo = max(0, bisect.bisect_right(bounds, self.first) - 1)
        self.hi = min(periods - 1, bisect.bisect_right(bounds, self.last) - 1)
        if self.first >= bounds[-1]:
            self.lo = periods
        empty: set[int] = set()
        if self.lo <= self.hi:
            if interval_s > shortest_s:
                candidates: Iterable[int] = range(self.lo, self.hi + 1)
            else:
                candidates = {
                    i
                    for s, e in self.outages
                    for i in range(
                        max(self.lo, bisect.bisect_right(bounds, s) - 1),
                        min(self.hi, bisect.bisect_right(bounds, e) - 1) + 1,
                    )
                }
            empty = {i for i in candidates if self.count(i) == 0}
        self.empty = sorted(empty)

    def window(self, i: int) -> tuple[float, float, bool]:
        """Start, end of the row of period i, and whether the period is complete."""
        start = max(self.bounds[i], self.first)
        end = self.bounds[i + 1]
        if end <= self.last:
            return start, end, True
        return start, self.last, False

    def count(self, i: int) -> int:
        """Reads in period i."""
        start, end, complete = self.window(i)
        if end < start:
            return 0
        return _read_count(self.outages, self.interval_s, start, end, inclusive=not complete)

    def rows_from(self, i: int) -> int:
        """Rows of this meter in periods i and later."""
        a = max(i, self.lo)
        if a > self.hi:
            return 0
        return self.hi - a + 1 - (len(self.empty) - bisect.bisect_left(self.empty, a))

    def has(self, i: int) -> bool:
        """Whether period i holds a row of this meter."""
        if not self.lo <= i <= self.hi:
            return False
        j = bisect.bisect_left(self.empty, i)
        return j == len(self.empty) or self.empty[j] != i


# --- rows ----------------------------------------------------------------------------------------


class _RowMaker:
    """Builds rows for one request (one typing, one zone, one field selection)."""

    def __init__(
        self, zone: tzinfo, patterns: tuple[str, ...] | None, *, v2: bool, numbers: bool
    ) -> None:
        self.zone = zone
        self.patterns = patterns
        self.v2 = v2
        self.numbers = numbers
        self._stamps: dict[float, tuple[int, str]] = {}
        self._plans: dict[tuple[str, ...], tuple[RegisterPlan, InstantPlan]] = {}
        self._specs: dict[
            str, tuple[dict[str, Any], list[tuple[int, float, tuple[tuple[str, int], ...]]]]
        ] = {}

    def _stamp(self, t: float) -> tuple[int, str]:
        """Epoch ms and local date text of a boundary (each computed once a request)."""
        stamp = self._stamps.get(t)
        if stamp is None:
            stamp = self._stamps[t] = (round(t * 1000), format_local(t, self.zone))
        return stamp

    def plan(self, meter: SimMeter) -> tuple[RegisterPlan, InstantPlan]:
        """The meter's field plan (cached per field set)."""
        names = meter.register_names
        plan = self._plans.get(names)
        if plan is None:
            instants = tuple(n for n in INSTANT_FIELDS if n in meter.fields)
            plan = self._plans[names] = field_plan(names, instants, self.patterns)
        return plan

    def rows(self, track: _Track, periods: Sequence[int]) -> list[dict[str, Any]]:
        """The rows of some periods of one meter."""
        windows = []
        for i in periods:
            start, end, complete = track.window(i)
            count = _read_count(track.outages, track.interval_s, start, end, inclusive=not complete)
            windows.append((start, end, count))
        rows = [self._identity(track, *w) for w in windows]
        reg_plan, inst_plan = self.plan(track.meter)
        if reg_plan:
            self._registers(rows, track, reg_plan, windows)
        if inst_plan:
            for row, (start, end, _) in zip(rows, windows, strict=True):
                self._instants(row, track, inst_plan, start, end)
        return rows

    def _identity(self, track: _Track, start: float, end: float, count: int) -> dict[str, Any]:
        start_ms, start_text = self._stamp(start)
        end_ms, end_text = self._stamp(end)
        return {
            "Meter": int(track.address) if self.v2 else track.address,
            "Protocol": track.protocol,
            "Count": count,
            "Start_Time_Stamp_UTC_ms": start_ms,
            "End_Time_Stamp_UTC_ms": end_ms,
            "Start_Date": start_text,
            "End_Date": end_text,
        }

    def _registers(
        self,
        rows: list[dict[str, Any]],
        track: _Track,
        plan: RegisterPlan,
        windows: list[tuple[float, float, int]],
    ) -> None:
        # Every boundary is evaluated once per register (a period's end is the next
        # one's start), and every value formatted once.
        model = track.model
        single = len(model.segments) == 1
        times = sorted({t for start, end, _ in windows for t in (start, end)})
        slots = []
        for start, end, count in windows:
            seg = model.segment_at(start)
            k0 = seg.slot_of(start)
            k1 = seg.slot_of(end - 1e-6) if end > start else k0
            slots.append((seg, k0 % SLOTS, min(k1 - k0, SLOTS), count > 1))
        iv = track.interval_s
        starts = [w[0] for w in windows]
        ends = [w[1] for w in windows]
        for name, c, keys in plan:
            pulses = name.startswith("Pulse_Cnt")
            unit = 1.0 if pulses else track.unit
            units = model.units_at(c, times, unit)
            encode = self._encoder(pulses, unit)
            at = dict(zip(times, units, strict=True))
            text_at = dict(zip(times, map(encode, units), strict=True))
            firsts = list(map(at.__getitem__, starts))
            lasts = list(map(at.__getitem__, ends))
            if single:  # no reset inside: registers only grow
                lows, highs = firsts, lasts
            else:
                pairs = [model.extremes(c, a, b, unit) for a, b in zip(starts, ends, strict=True)]
                lows, highs = [p[0] for p in pairs], [p[1] for p in pairs]
            wanted = {s for _, s in keys}
            text = _memo(encode)  # diffs and deltas repeat: format each once
            columns: dict[int, list[Any]] = {}
            if 0 in wanted or (single and 2 in wanted):
                columns[0] = list(map(text_at.__getitem__, starts))
            if 1 in wanted or (single and 3 in wanted):
                columns[1] = list(map(text_at.__getitem__, ends))
            if 2 in wanted:
                columns[2] = columns[0] if single else list(map(text, lows))
            if 3 in wanted:
                columns[3] = columns[1] if single else list(map(text, highs))
            if 4 in wanted:
                columns[4] = [text(b - a) for a, b in zip(firsts, lasts, strict=True)]
            if 5 in wanted:
                deltas = []
                for (seg, k0, span, several), low, high in zip(slots, lows, highs, strict=True):
                    if several:
                        biggest = _slot_extremes(seg.table, c, k0, span)[1]
                        step = biggest * seg.scale[c] * iv / SLOT_S
                        # Quantized reads: some pair of them jumps by the ceiling.
                        deltas.append(min(math.ceil(step * unit - 1e-9), high - low))
                    else:
                        deltas.append(0)
                columns[5] = list(map(text, deltas))
            names = [key for key, _ in keys]
            picked = [columns[s] for _, s in keys]
            for row, values in zip(rows, zip(*picked, strict=True), strict=True):
                row.update(zip(names, values, strict=True))

    def _encoder(self, pulses: bool, unit: float) -> Callable[[int], Any]:
        """Quantized units -> the wire value (V2 numbers, legacy numeric strings)."""
        digits = round(math.log10(unit))
        if pulses or digits == 0:
            return int if self.numbers else str
        if self.numbers:
            return lambda units: round(units / unit, digits)
        return lambda units: _units_text(units, digits)

    def _instants(
        self, row: dict[str, Any], track: _Track, plan: InstantPlan, start: float, end: float
    ) -> None:
        constants, powers = self._instant_specs(track, plan)
        row.update(constants)
        numbers = self.numbers
        stats: dict[int, tuple[float, float, float, float]] = {}
        for j, factor, keys in powers:
            base = stats.get(j)
            if base is None:
                base = stats[j] = _power_stats(track.model, j, start, end)
            for key, s in keys:
                value = round(base[s] * factor, 2)
                row[key] = value if numbers else f"{value:.2f}"

    def _instant_specs(
        self, track: _Track, plan: InstantPlan
    ) -> tuple[dict[str, Any], list[tuple[int, float, tuple[tuple[str, int], ...]]]]:
        """A meter's constant fields (encoded once) and its power-derived ones."""
        specs = self._specs.get(track.address)
        if specs is not None:
            return specs
        constants: dict[str, Any] = {}
        powers: list[tuple[int, float, tuple[tuple[str, int], ...]]] = []
        for name, keys in plan:
            fixed: tuple[float, ...] | None = None
            digits = 2
            j = 3 if name.endswith("_Tot") else int(name[-1]) - 1 if name[-1].isdigit() else 0
            if name == "Line_Freq":
                fixed, digits = _FREQ_STATS, 3
            elif name.startswith("RMS_Volts"):
                fixed = _VOLTS_STATS if track.live[j] else (0.0, 0.0, 0.0, 0.0)
            elif name.startswith("Power_Factor"):
                code = float(track.pf_code if track.live[j] else 200)
                fixed = (code, 0.0, code, code)
            elif name.startswith("Amps"):
                powers.append((j, track.volts_factor, keys))
            elif name.startswith("Reactive_Pwr"):
                powers.append((j, track.tan_phi, keys))
            else:  # RMS_Watts_Ln_n, RMS_Watts_Tot
                powers.append((j, 1.0, keys))
            if fixed is not None:
                for key, s in keys:
                    value = round(fixed[s], digits)
                    constants[key] = value if self.numbers else f"{value:.{digits}f}"
        specs = self._specs[track.address] = (constants, powers)
        return specs


def _memo(encode: Callable[[int], Any]) -> Callable[[int], Any]:
    cache: dict[int, Any] = {}

    def encoded(value: int) -> Any:
        out = cache.get(value)
        if out is None:
            out = cache[value] = encode(value)
        return out

    return encoded


def _units_text(units: int, digits: int) -> str:
    """A quantized register as EKM's numeric string (no float rounding)."""
    if digits == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


def _power_stats(
    model: RegisterModel, j: int, start: float, end: float
) -> tuple[float, float, float, float]:
    """Average, deviation, min and max (W) of power channel j over [start, end]."""
    # Mean from the energy; deviation from the slot table's squares plus the snapshot
    # noise; min and max from the slots' means times the noise bounds.
    c = POWER_ENERGY_CHANNEL[j]
    seg = model.segment_at(start)
    k0 = seg.slot_of(start)
    duration = end - start
    w_per_kwh = seg.scale[c] * _W_PER_KWH_SLOT
    if duration >= 1:
        mean = model.flow(c, start, end) * 3_600_000 / duration
        square = (
            sum(s.square_integral(j, lo, hi) for s, lo, hi in model.pieces(start, end)) / duration
        )
        k1 = seg.slot_of(end - 1e-6)
    else:
        low, _ = _slot_extremes(seg.table, c, k0 % SLOTS, 0)
        mean = low * w_per_kwh
        square = mean * mean
        k1 = k0
    variance = max(0.0, square - mean * mean) + square * _NOISE_VAR
    low, high = _slot_extremes(seg.table, c, k0 % SLOTS, min(k1 - k0, SLOTS))
    return (
        mean,
        math.sqrt(variance),
        low * w_per_kwh * (1 - _WATT_NOISE),
        high * w_per_kwh * (1 + _WATT_NOISE),
    )


# --- the endpoints' computations ------------------------------------------------------------------


def summary_rows(
    fleet: Fleet, query: SummaryQuery, *, now: float, v2: bool, numbers: bool = False
) -> list[dict[str, Any]] | NoData:
    """The page of rows a Summary request asks for, or the EKM status without rows."""
    iv = fleet.interval_s
    meters = [fleet.meters[a] for a in sorted(query.meters) if a in fleet.meters]
    spans = [(m, data_span(m, iv, now)) for m in meters]
    with_data = [(m, span) for m, span in spans if span is not None]
    names = "~".join(query.meters)
    if not with_data:
        return NoData(1000, {"meters": names})
    first = min(span[0] for _, span in with_data)
    last = max(span[1] for _, span in with_data)
    if query.report == "range":
        bounds: Sequence[float] = (query.start, query.end)
    else:
        # Only periods that may hold data: from the first read (or the window's last
        # period) to the last read (or at least one period).
        lo = min(max(query.start, first), query.end - 0.5)
        hi = max(lo + 0.5, min(query.end, last + 0.5))
        bounds = period_bounds(query.report, query.zone, lo, hi)
    shortest = _SHORTEST_S.get(query.report, query.end - query.start)
    tracks = [_Track(m, span, bounds, iv, shortest) for m, span in with_data]
    total = sum(t.rows_from(0) for t in tracks)
    if total == 0:
        return _no_rows(query, names, first, last)
    maker = _RowMaker(query.zone, query.fields, v2=v2, numbers=v2 or numbers)
    if query.offset >= total:
        return []
    # Newest first: the period holding row number ``offset``, by bisection.
    lo_i, hi_i = 0, len(bounds) - 2
    while lo_i < hi_i:
        mid = (lo_i + hi_i + 1) // 2
        if sum(t.rows_from(mid) for t in tracks) > query.offset:
            lo_i = mid
        else:
            hi_i = mid - 1
    skip = query.offset - sum(t.rows_from(lo_i + 1) for t in tracks)
    page: list[tuple[int, int]] = []  # (period, track) in answer order
    for i in range(lo_i, -1, -1):
        for n, track in enumerate(tracks):
            if not track.has(i):
                continue
            if skip:
                skip -= 1
                continue
            page.append((i, n))
        if len(page) >= query.limit:
            break
    del page[query.limit :]
    return _page_rows(maker, tracks, page)


def _page_rows(
    maker: _RowMaker, tracks: Sequence[_Track], page: Sequence[tuple[int, int]]
) -> list[dict[str, Any]]:
    """Build the rows of a page meter by meter, in the page's order."""
    by_track: dict[int, list[int]] = {}
    for position, (_, n) in enumerate(page):
        by_track.setdefault(n, []).append(position)
    rows: list[dict[str, Any]] = [{}] * len(page)
    for n, positions in by_track.items():
        made = maker.rows(tracks[n], [page[p][0] for p in positions])
        for position, row in zip(positions, made, strict=True):
            rows[position] = row
    return rows


def _no_rows(query: SummaryQuery, names: str, first: float, last: float) -> NoData:
    zone = query.zone
    if query.end <= first:
        return NoData(1002, {"meters": names, "first": format_local(first, zone)})
    if query.start > last:
        return NoData(1003, {"meters": names, "last": format_local(last, zone)})
    details = {
        "meters": names,
        "start": format_local(query.start, zone),
        "end": format_local(query.end, zone),
    }
    return NoData(1001, details)


def summarize(
    meter: SimMeter,
    start: float,
    end: float,
    *,
    interval_s: int,
    now: float | None = None,
    zone: tzinfo = UTC,
    fields: tuple[str, ...] | None = None,
    v2: bool = True,
    numbers: bool | None = None,
) -> dict[str, Any] | None:
    """One meter's summary row over [start, end) (the MQTT summaries use it).

    The row starts no earlier than the first read and ends no later than the last read
    at ``now`` (default: ``end``); None when the meter has no read in it. ``v2`` chooses
    the typing (``numbers`` overrides it for the values).
    """
    span = data_span(meter, interval_s, end if now is None else now)
    if span is None:
        return None
    track = _Track(meter, span, (start, end), interval_s, end - start)
    if not track.has(0):
        return None
    maker = _RowMaker(zone, fields, v2=v2, numbers=v2 if numbers is None else numbers)
    return maker.rows(track, [0])[0]


def first_last(
    fleet: Fleet, addresses: Iterable[str], *, now: float, zone: tzinfo = UTC
) -> list[dict[str, Any]] | NoData:
    """Summary V2 First/Last: each meter's first and last read (meters without: absent)."""
    out = []
    for address in sorted(addresses):
        meter = fleet.meters.get(address)
        span = data_span(meter, fleet.interval_s, now) if meter is not None else None
        if span is None:
            continue
        out.append(
            {
                "Meter": int(address),
                "First_Report_UTC_ms": round(span[0] * 1000),
                "Last_Report_UTC_ms": round(span[1] * 1000),
                "First_Date": format_local(span[0], zone),
                "Last_Date": format_local(span[1], zone),
            }
        )
    if not out:
        return NoData(1000, {"meters": "~".join(addresses)})
    return out


def gateway_status(
    gateways: Iterable[SimGateway], *, now: float, interval_s: int
) -> list[dict[str, Any]]:
    """Summary V2 GStat: each gateway's state; an online one was seen at the newest read."""
    newest = math.floor(now / interval_s) * interval_s
    return [
        {
            "Gateway": gw.mac,
            "Status": "online" if gw.online else "offline",
            "Last_Seen_UTC_ms": round(
                (newest if gw.online or gw.last_seen is None else gw.last_seen) * 1000
            ),
            "Meters": len(gw.meters),
        }
        for gw in gateways
    ]


__all__ = [
    "INSTANT_FIELDS",
    "MAX_LIMIT",
    "REGISTER_STATS",
    "REPORTS",
    "SUMMARY_REGISTERS",
    "NoData",
    "SummaryError",
    "SummaryQuery",
    "data_span",
    "field_plan",
    "first_last",
    "format_local",
    "gateway_status",
    "local_to_utc",
    "parse_addresses",
    "parse_summary_query",
    "parse_zone",
    "period_bounds",
    "summarize",
    "summary_rows",
]
