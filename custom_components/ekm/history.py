"""History: EKM's Summary API imported into long-term statistics (core's opower pattern).

One slow coordinator per cloud entry. On the first run it backfills every meter from its
first report (EKM's V2 First/Last where the server has it, otherwise a monthly probe
finds the first month with data), at most ``MAX_HISTORY`` back or from the "import
history since" option, chunk by chunk so Home Assistant stays responsive. Then, every
hour and whenever an MQTT ``summary/<gateway key>`` message arrives, it re-reads from
the last imported hour minus ``LATE_DATA_MARGIN`` and rewrites those hours, continuing
the stored sum.

What makes it idempotent: the statistics themselves are the bookmark. Each write
carries the running sum from the hour before the window, so a restart or reload in the
middle of an import resumes from the last written hour and counts nothing twice; a 429
ends the run (the next one resumes where it stopped, after EKM's ``Retry-After``).
Statistics are never cleared: not on unload, not when a meter is excluded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
import time
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
from homeassistant.components.recorder.tasks import SynchronizeTask
from homeassistant.const import UnitOfEnergy
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import EnergyConverter

from .const import CONF_HISTORY_SINCE, DOMAIN, LOGGER
from .coordinator import EkmSummaryCoordinator, update_failed
from .pulse_history import PulseHistory
from .pyekm import DeviceKind, EkmAuthError, EkmError, EkmRateLimitError
from .pyekm.errors import EkmRequestError
from .pyekm.summary import EkmSummaryClient, Report, SummaryPeriod
from .statistics import (
    EXPORT,
    HOUR_MS,
    IMPORT,
    SUMMARY_FIELDS,
    Hour,
    cumulative,
    hourly_energy,
    statistic_id,
)

if TYPE_CHECKING:
    from . import EkmConfigEntry
    from .coordinator import EkmCloudCoordinator

HISTORY_INTERVAL: Final = timedelta(hours=1)
# EKM may add or complete quarter hours late: every poll rewrites this much again.
LATE_DATA_MARGIN: Final = timedelta(hours=3)
# The oldest history imported (EKM keeps summaries forever; the Energy dashboard needs
# no more, and five years of hourly rows for a meter is about 88,000 rows).
MAX_HISTORY: Final = timedelta(days=5 * 366)
# A meter further behind than this is backfilled on its own, chunk by chunk.
CATCH_UP: Final = timedelta(days=2)
# Meters backfilled at the same time (each one request at a time).
BACKFILL_CONCURRENCY: Final = 2
# A meter EKM has no summary for is asked again after this many seconds.
NO_DATA_RETRY: Final = 6 * 3600
# What the statistics are called after the meter's name (the picker lists them beside
# the sensors, which are named "Energy imported" / "Energy exported").
STATISTIC_NAMES: Final = {
    IMPORT: "energy imported (EKM history)",
    EXPORT: "energy exported (EKM history)",
}
_MARGIN_HOURS: Final = int(LATE_DATA_MARGIN / timedelta(hours=1))


@dataclass(slots=True, kw_only=True)
class MeterHistory:
    """Where one meter's import stands."""

    address: str
    started_ms: int | None = None  # the first hour imported (first report or "since")
    last_hour_ms: int | None = None  # the newest complete hour written
    # Recent written hours: start -> (import kWh, export kWh, import sum, export sum,
    # import deficit; see statistics.Hour).
    recent: dict[int, tuple[float, float, float, float, float]] = field(default_factory=dict)
    no_data_at: float | None = None  # when EKM last had nothing for the meter (monotonic)
    checked_ms: int | None = None  # EKM was last asked up to here (a silent meter, too)
    last_period: SummaryPeriod | None = None  # the newest period written
    loaded: bool = False

    @property
    def bookmark_ms(self) -> int:
        """Where the next run starts (before the margin): EKM has been read up to here.

        Always a whole hour: a run rewrites whole hours only.
        """
        mark = max(self.last_hour_ms or 0, self.checked_ms or 0, self.started_ms or 0)
        return mark - mark % HOUR_MS

    @property
    def imported_until(self) -> datetime | None:
        """The end of the newest imported hour."""
        if self.last_hour_ms is None:
            return None
        return datetime.fromtimestamp((self.last_hour_ms + HOUR_MS) / 1000, UTC)

    def progress(self, now_ms: int) -> float | None:
        """How far the import has come, 0-100 %."""
        if self.last_hour_ms is None or self.started_ms is None:
            return 0.0 if self.started_ms is not None else None
        span = now_ms - self.started_ms
        done = self.last_hour_ms + HOUR_MS - self.started_ms
        return 100.0 if span <= 0 else round(min(100.0, 100.0 * done / span), 1)

    def base_before(self, hour_ms: int) -> tuple[float, float]:
        """The running sums of the newest written hour before ``hour_ms``."""
        earlier = [h for h in self.recent if h < hour_ms]
        if not earlier:
            return 0.0, 0.0
        row = self.recent[max(earlier)]
        return row[2], row[3]

    def deficit_before(self, hour_ms: int) -> float:
        """The import deficit carried out of the newest written hour before ``hour_ms``.

        Not stored in the statistics: after a restart it starts at 0 again (at most one
        register quantum counted early, once).
        """
        earlier = [h for h in self.recent if h < hour_ms]
        return self.recent[max(earlier)][4] if earlier else 0.0


def _public(meter: MeterHistory) -> MeterHistory:
    """What the entities see of a meter's import (no working state)."""
    return replace(meter, recent={}, last_period=None)


def _meta(address: str, kind: str, name: str) -> StatisticMetaData:
    return StatisticMetaData(
        source=DOMAIN,
        statistic_id=statistic_id(DOMAIN, address, kind),
        name=name,
        has_sum=True,
        mean_type=StatisticMeanType.NONE,
        unit_class=EnergyConverter.UNIT_CLASS,
        unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
    )


class EkmHistoryCoordinator(EkmSummaryCoordinator[Mapping[str, MeterHistory]]):
    """Imports each meter's Summary history into hourly external statistics."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EkmConfigEntry,
        client: EkmSummaryClient,
        cloud: EkmCloudCoordinator,
    ) -> None:
        super().__init__(
            hass, entry, client, cloud, name="history", interval=HISTORY_INTERVAL, empty={}
        )
        self.meters: dict[str, MeterHistory] = {}
        self.rows_written = 0
        since = entry.options.get(CONF_HISTORY_SINCE)
        self.since: date | None = date.fromisoformat(since) if since else None
        self.pulses = PulseHistory(hass, entry.options)  # ekm:<address>_pulse_<n>

    # --- the run ----------------------------------------------------------------------

    async def _async_update_data(self) -> Mapping[str, MeterHistory]:
        addresses = [a for a, d in self.cloud.data.devices.items() if d.kind is DeviceKind.METER]
        try:
            await self._async_load(addresses)
            await self._async_find_first_reports(addresses)
            now = dt_util.utcnow()
            behind = [a for a in addresses if self._is_behind(self.meters[a], now)]
            current = [
                a for a in addresses if a not in behind and self.meters[a].started_ms is not None
            ]
            if current:
                await self._async_poll(current, now)
            semaphore = asyncio.Semaphore(BACKFILL_CONCURRENCY)

            async def backfill(address: str) -> None:
                async with semaphore:
                    await self._async_backfill(self.meters[address], now)

            results = await asyncio.gather(*(backfill(a) for a in behind), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except EkmError as err:
            raise update_failed(err) from err
        now_ms = int(now.timestamp() * 1000)
        for address in (*current, *behind):
            self.meters[address].checked_ms = now_ms
        return {a: _public(self.meters[a]) for a in addresses if a in self.meters}

    def _is_behind(self, meter: MeterHistory, now: datetime) -> bool:
        if meter.started_ms is None:
            return False
        if meter.last_hour_ms is None and meter.checked_ms is None:
            return True
        return now.timestamp() * 1000 - meter.bookmark_ms > CATCH_UP.total_seconds() * 1000

    @staticmethod
    def _no_data(meter: MeterHistory) -> bool:
        """Whether EKM recently said it has nothing for the meter."""
        return meter.no_data_at is not None and time.monotonic() - meter.no_data_at < NO_DATA_RETRY

    def _oldest_ms(self, now: datetime) -> int:
        oldest = now - MAX_HISTORY
        if self.since is not None:
            since = datetime.combine(
                self.since, datetime.min.time(), dt_util.get_default_time_zone()
            )
            oldest = max(oldest, since)
        ms = int(oldest.timestamp() * 1000)
        return ms - ms % HOUR_MS

    async def _async_load(self, addresses: Sequence[str]) -> None:
        """Read each new meter's newest stored hours (the bookmark) from the recorder."""
        for address in addresses:
            meter = self.meters.setdefault(address, MeterHistory(address=address))
            if meter.loaded:
                continue
            rows: dict[str, list[Mapping[str, Any]]] = {}
            for kind in (IMPORT, EXPORT):
                stat_id = statistic_id(DOMAIN, address, kind)
                found = await get_instance(self.hass).async_add_executor_job(
                    get_last_statistics,
                    self.hass,
                    _MARGIN_HOURS + 2,
                    stat_id,
                    False,
                    {"sum", "state"},
                )
                rows[kind] = list(found.get(stat_id, ()))
            exports = {int(r["start"] * 1000): r for r in rows[EXPORT]}
            for row in rows[IMPORT]:
                start = int(row["start"] * 1000)
                other = exports.get(start, {})
                meter.recent[start] = (
                    float(row.get("state") or 0.0),
                    float(other.get("state") or 0.0),
                    float(row.get("sum") or 0.0),
                    float(other.get("sum") or 0.0),
                    0.0,
                )
            if meter.recent:
                meter.last_hour_ms = max(meter.recent)
                meter.started_ms = meter.started_ms or min(meter.recent)
            await self.pulses.async_load(address)
            meter.loaded = True

    async def _async_find_first_reports(self, addresses: Sequence[str]) -> None:
        """Where each never-imported meter's history starts."""
        new = [
            a
            for a in addresses
            if self.meters[a].last_hour_ms is None
            and self.meters[a].started_ms is None
            and not self._no_data(self.meters[a])
        ]
        if not new:
            return
        now = dt_util.utcnow()
        oldest = self._oldest_ms(now)
        firsts: dict[str, int | None] = {}
        try:
            first_last = await self.client.async_first_last(new)
        except EkmAuthError, EkmRateLimitError:
            raise
        except EkmError as err:  # an inferred call: anything but a clear answer is "unknown"
            LOGGER.debug("No first report from Summary V2 (%s); asking the summaries", err)
            first_last = None
        if first_last is not None:
            firsts = {a: fl.first_ms for a, fl in first_last.items()}
        unknown = [a for a in new if firsts.get(a) is None]
        if unknown:
            firsts |= await self._async_probe_first(unknown, oldest, now)
        for address in new:
            first = firsts.get(address)
            meter = self.meters[address]
            if first is None:
                meter.no_data_at = time.monotonic()  # asked again after NO_DATA_RETRY
                LOGGER.debug("EKM has no summary history for meter %s", address)
                continue
            first = max(first, oldest)
            meter.started_ms = first - first % HOUR_MS

    async def _async_probe_first(
        self, addresses: Sequence[str], oldest: int, now: datetime
    ) -> dict[str, int | None]:
        """Where the summaries of meters start, walking back as few requests as possible.

        One monthly summary of the whole span (a server that knows no monthly report is
        asked for days); a server that takes neither starts from the oldest hour allowed,
        and the import walks forward through whatever EKM says is empty.
        """
        firsts: dict[str, int | None] = {}
        for report in (Report.MONTH, Report.DAY):
            try:
                periods = await self.client.async_summary(
                    addresses,
                    report,
                    datetime.fromtimestamp(oldest / 1000, UTC),
                    now,
                    timezone=self.hass.config.time_zone,
                    fields=("kWh_Tot_Diff",),
                )
            except EkmRequestError as err:
                LOGGER.debug("EKM refused a %s summary (%s)", report, err)
                continue
            for period in periods:
                known = firsts.get(period.address)
                if known is None or period.start_ms < known:
                    firsts[period.address] = period.start_ms
            return firsts
        return dict.fromkeys(addresses, oldest)

    async def _async_backfill(self, meter: MeterHistory, now: datetime) -> None:
        """Import a meter that is far behind, one chunk (sub-window) at a time."""
        assert meter.started_ms is not None
        start_ms = (
            (meter.last_hour_ms + HOUR_MS) if meter.last_hour_ms is not None else meter.started_ms
        )
        start_ms = max(start_ms, meter.bookmark_ms)  # a silent meter: from where EKM was read
        window_start = max(
            meter.started_ms, start_ms - int(LATE_DATA_MARGIN.total_seconds() * 1000)
        )
        await self._async_import(meter, window_start, now)

    async def _async_poll(self, addresses: Sequence[str], now: datetime) -> None:
        """Re-read the last hours of every caught-up meter in as few requests as possible."""
        margin_ms = int(LATE_DATA_MARGIN.total_seconds() * 1000)
        starts = {
            a: max(self.meters[a].started_ms or 0, self.meters[a].bookmark_ms - margin_ms)
            for a in addresses
        }
        window_start = min(starts.values())
        periods = await self.client.async_summary(
            addresses,
            Report.QUARTER_HOUR,
            datetime.fromtimestamp((window_start - HOUR_MS) / 1000, UTC),
            now,
            timezone=self.hass.config.time_zone,
            fields=(*SUMMARY_FIELDS, *self.pulses.fields),
        )
        by_meter: dict[str, list[SummaryPeriod]] = {a: [] for a in addresses}
        for period in periods:
            if period.address in by_meter:
                by_meter[period.address].append(period)
        for address in addresses:
            self._write(self.meters[address], by_meter[address], starts[address], now)

    async def _async_import(self, meter: MeterHistory, window_start: int, now: datetime) -> None:
        """Rewrite a meter's hours from ``window_start`` (whole hours) up to now, in chunks."""
        previous: SummaryPeriod | None = None
        carry: list[SummaryPeriod] = []
        async for chunk in self.client.iter_summary(
            [meter.address],
            Report.QUARTER_HOUR,
            datetime.fromtimestamp((window_start - HOUR_MS) / 1000, UTC),
            now,
            timezone=self.hass.config.time_zone,
            fields=(*SUMMARY_FIELDS, *self.pulses.fields),
        ):
            periods = carry + chunk
            if not periods:
                continue
            # The newest hour of a chunk may continue in the next one: keep it back.
            last_hour = periods[-1].start_ms - periods[-1].start_ms % HOUR_MS
            carry = [p for p in periods if p.start_ms >= last_hour]
            ready = [p for p in periods if p.start_ms < last_hour]
            if ready:
                await self._async_recorder_caught_up()
                previous = self._write(meter, ready, window_start, now, previous=previous)
                self._publish_progress()
            await asyncio.sleep(0)
        if carry:
            self._write(meter, carry, window_start, now, previous=previous)

    async def _async_recorder_caught_up(self) -> None:
        """Wait until the recorder has written what was queued before (the last chunk).

        A first import can produce rows faster than the database takes them; queueing
        them all would hold them in memory and make a shutdown wait for the backlog.
        Fetching the next chunk still overlaps with writing the previous one.
        """
        future: asyncio.Future[None] = self.hass.loop.create_future()
        get_instance(self.hass).queue_task(SynchronizeTask(future=future))
        await future

    def _write(
        self,
        meter: MeterHistory,
        periods: Sequence[SummaryPeriod],
        window_start: int,
        now: datetime,
        *,
        previous: SummaryPeriod | None = None,
    ) -> SummaryPeriod | None:
        """Write the complete hours in ``periods`` (those from ``window_start`` on).

        Returns the newest period used, the ``previous`` of the next chunk.
        """
        if previous is None:
            earlier = [p for p in periods if p.start_ms < window_start]
            if earlier:
                previous = max(earlier, key=lambda p: p.start_ms)
            elif meter.last_period is not None and meter.last_period.start_ms < window_start:
                previous = meter.last_period  # bridges a silence longer than the window
        inside = [p for p in periods if p.start_ms >= window_start]
        if not inside:
            return previous
        self.pulses.write(meter.address, inside, previous, now, self._name(meter.address))
        energy = hourly_energy(
            inside,
            now_ms=int(now.timestamp() * 1000),
            previous=previous,
            deficit=meter.deficit_before(inside[0].start_ms),
        )
        if energy.resets:
            LOGGER.info(
                "A register of EKM meter %s went down (replaced or reset meter?); "
                "those periods count 0 in the statistics",
                meter.address,
            )
        if not energy.hours:
            return previous
        first = energy.hours[0].start_ms
        # Hours written before that EKM no longer returns keep their value.
        kept = {
            h: Hour(h, row[0], row[1], row[4])
            for h, row in meter.recent.items()
            if first <= h <= energy.hours[-1].start_ms
        }
        merged = {**kept, **{h.start_ms: h for h in energy.hours}}
        hours = [merged[h] for h in sorted(merged)]
        rows = cumulative(hours, meter.base_before(first))
        name = self._name(meter.address)
        for index, kind in enumerate((IMPORT, EXPORT)):
            statistics = [
                StatisticData(
                    start=datetime.fromtimestamp(hour.start_ms / 1000, UTC),
                    state=(hour.imported, hour.exported)[index],
                    sum=(imported_sum, exported_sum)[index],
                )
                for hour, imported_sum, exported_sum in rows
            ]
            async_add_external_statistics(
                self.hass,
                _meta(meter.address, kind, f"{name} {STATISTIC_NAMES[kind]}"),
                statistics,
            )
        self.rows_written += 2 * len(rows)
        for hour, imported_sum, exported_sum in rows:
            meter.recent[hour.start_ms] = (
                hour.imported,
                hour.exported,
                imported_sum,
                exported_sum,
                hour.deficit,
            )
        meter.last_hour_ms = max(meter.last_hour_ms or 0, rows[-1][0].start_ms)
        keep_from = meter.last_hour_ms - (_MARGIN_HOURS + 2) * HOUR_MS
        meter.recent = {h: v for h, v in meter.recent.items() if h >= keep_from}
        meter.last_period = max(inside, key=lambda p: p.start_ms)
        return meter.last_period

    def _name(self, address: str) -> str:
        """The meter's name as its device shows it (the statistic names follow it)."""
        device = self.cloud.data.devices.get(address)
        return device.display_name if device else f"Omnimeter {address.lstrip('0')}"

    def _snapshot(self) -> dict[str, MeterHistory]:
        return {a: _public(m) for a, m in self.meters.items()}

    def _publish_progress(self) -> None:
        """Show the progress of a running import to the entities.

        Unlike ``async_set_updated_data``: no debug line per chunk, and the hourly run is
        not rescheduled.
        """
        self.data = self._snapshot()
        self.async_update_listeners()

    # --- actions ---------------------------------------------------------------------------

    async def async_reimport(self, addresses: Sequence[str], start: datetime) -> int:
        """Import every hour from ``start`` on again (the action ``ekm.import_history``).

        The sum continues from the stored hour before ``start``, and every later hour is
        rewritten, so the statistics stay continuous. Returns the hours written; EKM's
        errors reach the caller (the action translates them).
        """
        start_ms = int(start.timestamp() * 1000)
        start_ms -= start_ms % HOUR_MS
        written_before = self.rows_written
        now = dt_util.utcnow()
        for address in addresses:
            meter = self.meters.setdefault(address, MeterHistory(address=address, loaded=True))
            base = await self._async_stored_before(address, start_ms)
            meter.recent = {base[0]: (0.0, 0.0, base[1], base[2], 0.0)} if base else {}
            meter.last_hour_ms = base[0] if base else None
            meter.started_ms = min(meter.started_ms or start_ms, start_ms)
            await self.pulses.async_rewind(address, start_ms)
            await self._async_import(meter, start_ms, now)
        self._publish_progress()
        return (self.rows_written - written_before) // 2

    async def _async_stored_before(
        self, address: str, start_ms: int
    ) -> tuple[int, float, float] | None:
        """The newest stored hour before ``start_ms``: (start, import sum, export sum)."""
        ids = {statistic_id(DOMAIN, address, kind) for kind in (IMPORT, EXPORT)}
        end = datetime.fromtimestamp(start_ms / 1000, UTC)
        imports: list[Any] = []
        for span in (timedelta(days=31), MAX_HISTORY):  # nearly always found in the first
            found = await get_instance(self.hass).async_add_executor_job(
                statistics_during_period, self.hass, end - span, end, ids, "hour", None, {"sum"}
            )
            imports = list(found.get(statistic_id(DOMAIN, address, IMPORT)) or [])
            if imports:
                break
        if not imports:
            return None
        last = imports[-1]
        exports = {r["start"]: r for r in found.get(statistic_id(DOMAIN, address, EXPORT)) or []}
        export_sum = float(exports.get(last["start"], {}).get("sum") or 0.0)
        return int(last["start"] * 1000), float(last.get("sum") or 0.0), export_sum
