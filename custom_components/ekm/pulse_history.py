"""History of the configured pulse inputs: ``ekm:<address>_pulse_<n>`` statistics.

The history import (``history.py``) hands every batch of Summary periods it writes the
energy from to :meth:`PulseHistory.write` as well: the same rows (``Pulse_Cnt_n_Diff``
and the counter at each period's ends, asked in the same requests), the same complete
hours and the same rules as the energy (``statistics.py``): a gap between periods adds
the counter's rise across it to the hour the data resumes in, a counter that goes down
(a replaced meter) counts 0. Each hour is the count x the amount per pulse, in the
configured unit; the sum continues the stored one, so a restart or a re-import counts
nothing twice (the statistics are the bookmark, as for the energy).

An input configured after its meter's history was imported starts with the hours the
import rewrites from then on; the action "Import history" fills earlier ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.recorder.models import (
    StatisticData,
    StatisticMeanType,
    StatisticMetaData,
)
from homeassistant.components.recorder.statistics import (
    async_add_external_statistics,
    get_last_statistics,
    statistics_during_period,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from homeassistant.util.unit_conversion import EnergyConverter, VolumeConverter

from .const import DOMAIN
from .pyekm.summary import SummaryPeriod
from .statistics import HOUR_MS, register_change, register_edge, statistic_id

if TYPE_CHECKING:
    from .pulse import PulseInput

# Hours read back at a start (the rewritten margin and two more, as for the energy).
RECENT_HOURS: Final = 5
# What the statistic is called after the meter's name.
_NAMES: Final = {
    "water": "water input {n} (EKM history)",
    "gas": "gas input {n} (EKM history)",
    "electricity": "electricity input {n} (EKM history)",
    "other": "pulse input {n} (EKM history)",
}


def pulse_statistic_id(address: str, number: int) -> str:
    """``ekm:<address>_pulse_<n>``."""
    return statistic_id(DOMAIN, address, f"pulse_{number}")


def summary_fields(pulses: Iterable[PulseInput]) -> tuple[str, ...]:
    """The Summary fields the configured inputs need (their change and both ends)."""
    numbers = sorted({p.number for p in pulses})
    return tuple(f"Pulse_Cnt_{n}_{s}" for n in numbers for s in ("Diff", "Min", "Max"))


def hourly_counts(
    periods: Iterable[SummaryPeriod],
    name: str,
    *,
    now_ms: int,
    previous: SummaryPeriod | None = None,
) -> list[tuple[int, float]]:
    """A counter's rise per complete UTC hour (start ms, count), oldest first."""
    ordered = sorted({p.start_ms: p for p in periods}.values(), key=lambda p: p.start_ms)
    counts: dict[int, float] = {}
    before = previous
    for period in ordered:
        rise = register_change(period, name)
        if rise is None:
            before = period
            continue
        if before is not None and before.end_ms < period.start_ms:
            end = register_edge(before, name, start=False)
            start = register_edge(period, name, start=True)
            gap = 0.0 if end is None or start is None else start - end
            rise += max(0.0, gap)  # a counter that went down in a gap counts 0
        hour = period.start_ms - period.start_ms % HOUR_MS
        counts[hour] = counts.get(hour, 0.0) + max(0.0, rise)
        before = period
    if not ordered:
        return []
    covered_until = min(ordered[-1].end_ms, now_ms)
    return [(h, counts[h]) for h in sorted(counts) if h + HOUR_MS <= covered_until]


def metadata(pulse: PulseInput, meter_name: str) -> StatisticMetaData:
    """The statistic's metadata: a sum in the configured unit."""
    volume = pulse.unit in VolumeConverter.VALID_UNITS
    return StatisticMetaData(
        source=DOMAIN,
        statistic_id=pulse_statistic_id(pulse.address, pulse.number),
        name=f"{meter_name} {_NAMES[pulse.kind].format(n=pulse.number)}",
        has_sum=True,
        mean_type=StatisticMeanType.NONE,
        unit_class=VolumeConverter.UNIT_CLASS if volume else EnergyConverter.UNIT_CLASS,
        unit_of_measurement=pulse.unit,
    )


@dataclass(slots=True)
class _Series:
    pulse: PulseInput
    recent: dict[int, tuple[float, float]] = field(default_factory=dict)  # hour: (state, sum)

    def base_before(self, hour_ms: int) -> float:
        earlier = [h for h in self.recent if h < hour_ms]
        return self.recent[max(earlier)][1] if earlier else 0.0


class PulseHistory:
    """The pulse series of one history import."""

    def __init__(self, hass: HomeAssistant, options: Mapping[str, Any]) -> None:
        # pulse.py builds on the sensor platform, which imports history.py: import late.
        from .pulse import configured  # noqa: PLC0415

        self.hass = hass
        self._series: dict[str, list[_Series]] = {}
        for pulse in configured(options):
            self._series.setdefault(pulse.address, []).append(_Series(pulse))
        self.fields = summary_fields(s.pulse for series in self._series.values() for s in series)

    async def async_load(self, address: str) -> None:
        """Read the newest stored hours of the meter's series (where each sum continues)."""
        for series in self._series.get(address, ()):
            stat_id = pulse_statistic_id(address, series.pulse.number)
            found = await get_instance(self.hass).async_add_executor_job(
                get_last_statistics, self.hass, RECENT_HOURS, stat_id, False, {"sum", "state"}
            )
            series.recent = {
                int(row["start"] * 1000): (float(row.get("state") or 0), float(row.get("sum") or 0))
                for row in found.get(stat_id, ())
            }

    async def async_rewind(self, address: str, start_ms: int) -> None:
        """Continue from the newest stored hour before ``start_ms`` (a re-import)."""
        end = datetime.fromtimestamp(start_ms / 1000, UTC)
        for series in self._series.get(address, ()):
            stat_id = pulse_statistic_id(address, series.pulse.number)
            rows: list[Any] = []
            for span in (timedelta(days=31), timedelta(days=5 * 366)):  # mostly the first
                found = await get_instance(self.hass).async_add_executor_job(
                    statistics_during_period,
                    self.hass,
                    end - span,
                    end,
                    {stat_id},
                    "hour",
                    None,
                    {"sum"},
                )
                if rows := list(found.get(stat_id) or []):
                    break
            last = rows[-1] if rows else None
            series.recent = (
                {int(last["start"] * 1000): (0.0, float(last.get("sum") or 0))} if last else {}
            )

    def write(
        self,
        address: str,
        periods: Sequence[SummaryPeriod],
        previous: SummaryPeriod | None,
        now: datetime,
        meter_name: str,
    ) -> None:
        """Write each configured input's complete hours in ``periods``."""
        now_ms = int(now.timestamp() * 1000)
        for series in self._series.get(address, ()):
            pulse = series.pulse
            counted = hourly_counts(
                periods, f"Pulse_Cnt_{pulse.number}", now_ms=now_ms, previous=previous
            )
            if not counted:
                continue
            first, last = counted[0][0], counted[-1][0]
            # Hours written before that EKM no longer returns keep their value.
            hours = {h: v[0] for h, v in series.recent.items() if first <= h <= last}
            hours |= {h: pulse.amount(count) for h, count in counted}
            total = series.base_before(first)
            rows: list[StatisticData] = []
            for hour in sorted(hours):
                total = round(total + hours[hour], 6)
                series.recent[hour] = (hours[hour], total)
                rows.append(
                    StatisticData(
                        start=datetime.fromtimestamp(hour / 1000, UTC),
                        state=hours[hour],
                        sum=total,
                    )
                )
            async_add_external_statistics(self.hass, metadata(pulse, meter_name), rows)
            keep_from = max(series.recent) - RECENT_HOURS * HOUR_MS
            series.recent = {h: v for h, v in series.recent.items() if h > keep_from}
