"""From EKM Summary periods to hourly energy: pure functions, no Home Assistant state.

The importer (``history.py``) asks EKM for 15-minute summaries and hands them here. Each
meter gives two external statistics (a public contract: owners pick them in the Energy
dashboard):

- ``ekm:<address>_energy_import``: Σ (``kWh_Tot_Diff`` - ``Rev_kWh_Tot_Diff``) per hour
  (EKM's total counts both directions, so forward = total - reverse);
- ``ekm:<address>_energy_export``: Σ ``Rev_kWh_Tot_Diff`` per hour.

Robustness rules, all here:

- Only complete hours are produced (every quarter of the hour ended before ``now`` and
  the newest period reaches the hour's end), so the in-progress hour is never written
  half-full; it is written by a later poll.
- A gap between two periods (EKM has no summary for some quarter hours, say the meter
  was offline) is not lost: the register's rise across the gap (``_Min`` of the period
  after minus ``_Max`` of the period before) is added to the hour the data resumes in.
- A register that goes down (meter replaced or reset) never makes a negative hour: that
  period counts 0 and is reported in :attr:`HourlyEnergy.resets`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from .pyekm.summary import SummaryPeriod

HOUR_MS: Final = 3_600_000
IMPORT: Final = "energy_import"
EXPORT: Final = "energy_export"
# Summary fields the importer asks for: each register's change and its value at the start
# and end of the period (for missing periods); half the size of every suffix ("*").
SUMMARY_FIELDS: Final = tuple(
    f"{register}_{suffix}"
    for register in ("kWh_Tot", "Rev_kWh_Tot")
    for suffix in ("Diff", "Min", "Max")
)
_TOTAL: Final = "kWh_Tot"
_REVERSE: Final = "Rev_kWh_Tot"
# Below this a decrease is rounding (registers are quantized to 0.01 kWh and less).
_EPSILON: Final = 1e-6


def statistic_id(domain: str, address: str, kind: str) -> str:
    """The external statistic id of one meter's series: ``ekm:<address>_<kind>``."""
    return f"{domain}:{address}_{kind}"


@dataclass(frozen=True, slots=True)
class Hour:
    """One complete hour of one meter (kWh).

    EKM's registers are quantized (0.1 to 0.001 kWh) and forward energy is the
    difference of two of them (total - reverse), so while a meter exports it can dip by
    a quantum. An hour never goes negative: the dip is kept as ``deficit`` and taken
    from the next hours, so the sum still follows the registers exactly.
    """

    start_ms: int
    imported: float
    exported: float
    deficit: float = 0.0


@dataclass(slots=True)
class HourlyEnergy:
    """The complete hours found in a meter's periods, oldest first."""

    hours: list[Hour] = field(default_factory=list)
    # Start (ms) of each period in which a register went down (replaced or reset meter).
    resets: list[int] = field(default_factory=list)

    @property
    def last_start_ms(self) -> int | None:
        """Start of the newest complete hour."""
        return self.hours[-1].start_ms if self.hours else None


def register_change(period: SummaryPeriod, name: str) -> float | None:
    """A register's change over a period: ``_Diff``, else its end minus its start."""
    diff = period.number(f"{name}_Diff")
    if diff is not None:
        return diff
    first = register_edge(period, name, start=True)
    last = register_edge(period, name, start=False)
    return None if first is None or last is None else last - first


def register_edge(period: SummaryPeriod, name: str, *, start: bool) -> float | None:
    """The register at the period's start (``_First``/``_Min``) or end (``_Last``/``_Max``)."""
    suffixes = ("_First", "_Min") if start else ("_Last", "_Max")
    for suffix in suffixes:
        value = period.number(name + suffix)
        if value is not None:
            return value
    return None


def hourly_energy(
    periods: Iterable[SummaryPeriod],
    *,
    now_ms: int,
    previous: SummaryPeriod | None = None,
    deficit: float = 0.0,
) -> HourlyEnergy:
    """Sum one meter's summary periods into complete UTC hours.

    ``periods`` may come in any order (EKM answers newest first) and may repeat; they
    must belong to one meter. ``previous`` is the period just before them, if known,
    so a gap at the start of the window is bridged too. ``deficit`` is the
    :attr:`Hour.deficit` of the hour before (see there).
    """
    ordered = sorted({p.start_ms: p for p in periods}.values(), key=lambda p: p.start_ms)
    result = HourlyEnergy()
    if not ordered:
        return result
    totals: dict[int, list[float]] = {}
    before = previous
    for period in ordered:
        total = register_change(period, _TOTAL)
        reverse = register_change(period, _REVERSE) or 0.0
        hour = period.start_ms - period.start_ms % HOUR_MS
        if total is None:
            before = period
            continue
        gap_total = gap_reverse = 0.0
        if before is not None and before.end_ms < period.start_ms:
            gap_total, gap_reverse = _gap(before, period)
        if total < -_EPSILON or reverse < -_EPSILON:  # went down inside the period
            result.resets.append(period.start_ms)
            total = reverse = 0.0
        if gap_total < -_EPSILON or gap_reverse < -_EPSILON:  # went down in a gap
            if result.resets[-1:] != [period.start_ms]:
                result.resets.append(period.start_ms)
            gap_total = gap_reverse = 0.0
        total += gap_total
        reverse += gap_reverse
        sums = totals.setdefault(hour, [0.0, 0.0])
        sums[0] += total - reverse  # may dip below 0 by a quantum: see Hour.deficit
        sums[1] += reverse
        before = period
    # An hour is complete when the newest period reaches its end and it is over.
    covered_until = ordered[-1].end_ms
    for hour in sorted(totals):
        if hour + HOUR_MS > min(covered_until, now_ms):
            break
        imported = totals[hour][0] - deficit
        deficit = max(0.0, -imported)
        result.hours.append(
            Hour(hour, round(max(0.0, imported), 6), round(totals[hour][1], 6), round(deficit, 6))
        )
    return result


def _gap(before: SummaryPeriod, after: SummaryPeriod) -> tuple[float, float]:
    """How much each register rose between two periods with missing ones between."""
    out: list[float] = []
    for name in (_TOTAL, _REVERSE):
        end = register_edge(before, name, start=False)
        start = register_edge(after, name, start=True)
        out.append(0.0 if end is None or start is None else start - end)
    return out[0], out[1]


def cumulative(hours: Sequence[Hour], base: tuple[float, float]) -> list[tuple[Hour, float, float]]:
    """Each hour with the running import and export sums, continuing ``base``."""
    imported, exported = base
    rows: list[tuple[Hour, float, float]] = []
    for hour in hours:
        imported += hour.imported
        exported += hour.exported
        rows.append((hour, round(imported, 6), round(exported, 6)))
    return rows
