"""Async client for EKM's Summary API: 15-minute to monthly history, legacy and V2 (beta).

EKM condenses every read into 15-minute summaries, kept for good, and combines them into
hours, days, weeks and months (ekm-cloud-api.md §3). This client splits a long window
into requests of at most 1,000 rows, pages, deduplicates, sorts and clips by UTC, so a
caller sees each period once, oldest first, whatever order and typing EKM answers with.

Windows are computed in UTC and only written as wall-clock times (``YYYYMMDDhhmm``) in
the requested timezone, so a DST change never loses or repeats an hour. Like
``cloud.py`` it takes an injected ``aiohttp.ClientSession``; the key travels only in
``params=`` (see ``http.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from enum import StrEnum
import logging
import math
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp

from .catalog import normalize_address, to_number
from .errors import EkmApiError, EkmResponseError, EkmServerError
from .http import DEFAULT_TIMEOUT, EkmHttpClient

_LOGGER = logging.getLogger(__name__)

SUMMARY_SERVER: Final = "https://summary.ekmpush.com"  # legacy Summary
SUMMARY_V2_SERVER: Final = "https://summary.ekmmetering.com"  # Summary V2 (beta)
# At most this many rows (periods x meters) per request: the largest ``limit`` clients use
# (ekm-cloud-api.md §13); EKM's real maximum is unknown. Pages are this long too.
MAX_ROWS_PER_REQUEST: Final = 1000
MAX_METERS_PER_REQUEST: Final = 100  # as the Realtime client (cloud.py)
PARSE_SLICE: Final = 100  # rows parsed between two turns of the event loop

# --- EKM wire names --------------------------------------------------------------------
# Documented or seen in EKM clients (ekm-cloud-api.md §3.1-§3.3):
LEGACY_PATH: Final = "/summary"  # meters=
V2_METER_PATH: Final = "/summary/api/v2/meter"  # devices=
METER_FIELD: Final = "Meter"  # a string in legacy, a number in V2
START_FIELD: Final = "Start_Time_Stamp_UTC_ms"
END_FIELD: Final = "End_Time_Stamp_UTC_ms"
WALL_TIME_FORMAT: Final = "%Y%m%d%H%M"  # start_date / end_date, local to timezone
# INFERRED: EKM names First/Last and GStat but publishes neither paths, parameters nor
# fields (§3.3); these follow the lead's contract. Change them here and nowhere else.
FIRST_LAST_PATH: Final = "/summary/api/v2/firstlast"  # devices=
FIRST_FIELD: Final = "First_Report_UTC_ms"
LAST_FIELD: Final = "Last_Report_UTC_ms"
GSTAT_PATH: Final = "/summary/api/v2/gstat"  # gateways=
GATEWAY_FIELDS: Final = ("Gateway", "MAC_Addr", "mac")  # the gateway's MAC, first found
STATUS_FIELD: Final = "Status"  # "online" / "offline"
ONLINE_FIELDS: Final = ("Online", "Is_Online", "Connected")  # boolean-ish alternatives
LAST_SEEN_FIELD: Final = "Last_Seen_UTC_ms"
# ---------------------------------------------------------------------------------------

# EKM statuses that mean "nothing there" for a Summary request: 1000-1003 (no data) and
# 1004 (timezone not supported for this date range: no rows to give either).
_NO_ROWS: Final = range(1000, 1005)
_IDENTITY: Final = frozenset({METER_FIELD, START_FIELD, END_FIELD})
_TRUE_WORDS: Final = frozenset({"online", "true", "yes", "on", "1", "connected", "up"})
_FALSE_WORDS: Final = frozenset({"offline", "false", "no", "off", "0", "disconnected", "down"})


class Report(StrEnum):
    """A Summary report: the length of its periods (``range``: one row per window)."""

    QUARTER_HOUR = "15"
    HOUR = "hr"
    DAY = "dy"
    WEEK = "wk"
    MONTH = "mo"
    RANGE = "range"


_HOUR: Final = timedelta(hours=1)
# Reports whose periods have one length in UTC (local quarter hours and hours).
_FIXED: Final[Mapping[Report, timedelta]] = {
    Report.QUARTER_HOUR: timedelta(minutes=15),
    Report.HOUR: _HOUR,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryPeriod:
    """One meter's summary for one period.

    ``values`` holds every numeric field (numbers or numeric strings, as floats), ``Count``
    included; ``extra`` everything else as EKM sent it (``Start_Date``, ``Protocol``,
    unknown fields). ``Meter`` and the two timestamps are ``address``, ``start_ms`` and
    ``end_ms`` and appear in neither.
    """

    address: str
    start_ms: int
    end_ms: int
    values: Mapping[str, float]
    extra: Mapping[str, Any]

    def number(self, name: str) -> float | None:
        """A numeric field (``kWh_Tot_Diff``, ``Count``...), None when absent."""
        return self.values.get(name)

    @property
    def start(self) -> datetime:
        """The period's start (UTC)."""
        return datetime.fromtimestamp(self.start_ms / 1000, UTC)

    @property
    def end(self) -> datetime:
        """The period's end (UTC; the newest read for the period in progress)."""
        return datetime.fromtimestamp(self.end_ms / 1000, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class FirstLast:
    """When a meter first and last reported (Summary V2 First/Last)."""

    address: str
    first_ms: int | None
    last_ms: int | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatus:
    """A gateway's status (Summary V2 GStat). ``online`` None: the answer did not say."""

    mac: str
    online: bool | None
    last_seen_ms: int | None
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Window:
    """One request's time window: UTC bounds to clip by and the wall times sent."""

    start: datetime
    end: datetime
    start_date: str
    end_date: str


class EkmSummaryClient(EkmHttpClient):
    """EKM Summary API client. Give it Home Assistant's (or any) aiohttp session.

    ``server`` None: the legacy API at SUMMARY_SERVER and V2 at SUMMARY_V2_SERVER; a
    server override is one base URL for both (and every other EKM API).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        key: str,
        *,
        server: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(session, key, timeout=timeout)
        base = server.rstrip("/") if server else None
        self._legacy = base or SUMMARY_SERVER
        self._v2 = base or SUMMARY_V2_SERVER
        self._v2_paths: dict[str, bool] = {}  # V2 path -> answered (False: 404)

    @property
    def v2_available(self) -> bool | None:
        """Whether the server has Summary V2: None until a V2 call told.

        True once any V2 call answered; False when every V2 call tried got HTTP 404.
        """
        if any(self._v2_paths.values()):
            return True
        return False if self._v2_paths else None

    # --- Summary -----------------------------------------------------------------------

    async def async_summary(
        self,
        meters: Sequence[str],
        report: Report | str,
        start: datetime,
        end: datetime,
        *,
        timezone: str = "UTC",
        fields: Sequence[str] | None = None,
        v2: bool = False,
    ) -> list[SummaryPeriod]:
        """Every period of ``meters`` that starts in [start, end), oldest first.

        ``start`` and ``end`` are aware datetimes; ``timezone`` (``Area/City``) aligns
        the periods on its local clock. Deduplicated by (address, start); within a period
        meters come in ascending address. ``v2`` asks Summary V2 (the legacy API when the
        server has no V2). With ``Report.RANGE`` each meter's one row is kept unclipped.
        """
        periods: list[SummaryPeriod] = []
        async for chunk in self.iter_summary(
            meters, report, start, end, timezone=timezone, fields=fields, v2=v2
        ):
            periods.extend(chunk)
        return periods

    def iter_summary(
        self,
        meters: Sequence[str],
        report: Report | str,
        start: datetime,
        end: datetime,
        *,
        timezone: str = "UTC",
        fields: Sequence[str] | None = None,
        v2: bool = False,
    ) -> AsyncIterator[list[SummaryPeriod]]:
        """What async_summary returns, one sub-window at a time, oldest first.

        Each chunk is sorted and no period appears in two chunks, so an importer can
        write chunk by chunk with bounded memory and resume after the last one it wrote.
        Empty sub-windows yield nothing. Arguments are checked at once (ValueError).
        """
        kind = Report(report)
        zone = zone_info(timezone)
        addresses = list(dict.fromkeys(normalize_address(m) for m in meters))
        groups = split_meters(addresses)
        windows = plan_windows(
            kind, start, end, zone, rows_per_meter(max((len(g) for g in groups), default=1))
        )
        params = {"report": str(kind), "format": "json", "timezone": zone_param(timezone)}
        if fields:
            params["fields"] = "~".join(fields)
        return self._iter_windows(groups, windows, params, clip=kind is not Report.RANGE, v2=v2)

    async def _iter_windows(
        self,
        groups: list[list[str]],
        windows: list[Window],
        params: Mapping[str, str],
        *,
        clip: bool,
        v2: bool,
    ) -> AsyncIterator[list[SummaryPeriod]]:
        for window in windows:
            low, high = epoch_ms(window.start), epoch_ms(window.end)
            found: dict[tuple[str, int], SummaryPeriod] = {}
            for group in groups:
                query = {
                    **params,
                    "start_date": window.start_date,
                    "end_date": window.end_date,
                }
                for period in await self._fetch_pages(group, query, v2=v2):
                    if not clip or low <= period.start_ms < high:
                        found[period.address, period.start_ms] = period
            if found:
                yield [found[key] for key in sorted(found, key=lambda k: (k[1], k[0]))]

    async def _fetch_pages(
        self, meters: list[str], query: Mapping[str, str], *, v2: bool
    ) -> list[SummaryPeriod]:
        """Every row of one request, page by page while a page is full."""
        found: dict[tuple[str, int], SummaryPeriod] = {}
        offset = 0
        while True:
            params = {**query, "limit": str(MAX_ROWS_PER_REQUEST), "offset": str(offset)}
            data = await self._get_rows(meters, params, v2=v2)
            page, skipped = await _parse_in_slices(data)
            if skipped and not page:  # rows, but none of them one: not "no data"
                raise EkmResponseError("Summary answer has rows but none usable")
            if skipped:
                _LOGGER.debug("Skipped %d summary rows without a meter or timestamps", skipped)
            new = 0
            for period in page:  # a period seen twice: the longer (newer) one wins
                known = found.get((period.address, period.start_ms))
                new += known is None
                if known is None or period.end_ms > known.end_ms:
                    found[period.address, period.start_ms] = period
            # A full page may have a successor; one that adds nothing new ends it anyway
            # (a server ignoring offset would otherwise be asked forever).
            if len(data) < MAX_ROWS_PER_REQUEST or not new:
                return list(found.values())
            offset += len(data)

    async def _get_rows(self, meters: list[str], params: dict[str, str], *, v2: bool) -> list[Any]:
        """One page of rows: from V2 when asked and there, else from the legacy API."""
        devices = "~".join(meters)
        if v2 and self._v2_paths.get(V2_METER_PATH, True):
            data = await self._v2_get(V2_METER_PATH, {**params, "devices": devices})
            if data is not None:
                return data
        try:
            data = await self._http.get_json(
                self._legacy + LEGACY_PATH, {**params, "meters": devices}
            )
        except EkmApiError as err:
            if err.code in _NO_ROWS:
                return []
            raise
        return _rows(data)

    # --- Summary V2 extras -----------------------------------------------------------

    async def async_first_last(self, meters: Sequence[str]) -> dict[str, FirstLast] | None:
        """When each meter first and last reported, keyed by 12-digit address.

        None when the server has no such call (HTTP 404, logged once at debug). Meters
        the answer does not mention are absent.
        """
        addresses = list(dict.fromkeys(normalize_address(m) for m in meters))
        result: dict[str, FirstLast] = {}
        for group in split_meters(addresses):
            rows = await self._v2_get(
                FIRST_LAST_PATH, {"devices": "~".join(group), "format": "json"}
            )
            if rows is None:
                return None
            for row in rows:
                address = _address(row.get(METER_FIELD)) if isinstance(row, Mapping) else None
                if address is None:
                    continue
                result[address] = FirstLast(
                    address=address,
                    first_ms=_ms(row.get(FIRST_FIELD)),
                    last_ms=_ms(row.get(LAST_FIELD)),
                    raw=dict(row),
                )
        return None if self._v2_paths.get(FIRST_LAST_PATH) is False else result

    async def async_gateway_status(self, macs: Sequence[str]) -> dict[str, GatewayStatus] | None:
        """Each gateway's status, keyed by lower-case MAC (no separators).

        None when the server has no GStat call (HTTP 404, logged once at debug).
        """
        wanted = list(dict.fromkeys(normalize_mac(mac) for mac in macs))
        result: dict[str, GatewayStatus] = {}
        for group in split_meters(wanted):
            rows = await self._v2_get(GSTAT_PATH, {"gateways": "~".join(group), "format": "json"})
            if rows is None:
                return None
            for row in rows:
                mac = _gateway_mac(row)
                if mac is None:
                    continue
                result[mac] = GatewayStatus(
                    mac=mac,
                    online=_online(row),
                    last_seen_ms=_ms(row.get(LAST_SEEN_FIELD)),
                    raw=dict(row),
                )
        return None if self._v2_paths.get(GSTAT_PATH) is False else result

    async def _v2_get(self, path: str, params: Mapping[str, str]) -> list[Any] | None:
        """The rows of a V2 call; None (and never asked again) when the server has none."""
        if self._v2_paths.get(path) is False:
            return None
        try:
            data = await self._http.get_json(self._v2 + path, params)
        except EkmServerError as err:
            if err.status != 404:
                raise
            _LOGGER.debug("The EKM server has no Summary V2 %s (HTTP 404): not asked again", path)
            self._v2_paths[path] = False
            return None
        except EkmApiError as err:
            if err.code not in _NO_ROWS:
                raise
            data = []
        self._v2_paths[path] = True
        return _rows(data)


# --- Parsing ---------------------------------------------------------------------------


def parse_summary(data: Any) -> tuple[list[SummaryPeriod], int]:
    """Parse a Summary answer (a JSON array of rows, any order): (periods, rows skipped).

    ``Meter`` may be a string or a number, the timestamps numbers or numeric strings;
    rows without a valid meter or timestamps are skipped. Periods come back sorted by
    (start, address); duplicates are kept (the caller deduplicates).
    """
    periods: list[SummaryPeriod] = []
    skipped = 0
    for row in _rows(data):
        period = _parse_row(row)
        if period is None:
            skipped += 1
        else:
            periods.append(period)
    periods.sort(key=lambda p: (p.start_ms, p.address))
    return periods, skipped


async def _parse_in_slices(data: Any) -> tuple[list[SummaryPeriod], int]:
    """parse_summary, giving the event loop a turn every PARSE_SLICE rows.

    A page of 1,000 rows takes some 20 ms to parse; other work in the same process (a
    recorder thread writing statistics, say) can stretch that many times over, so
    the page is parsed in slices rather than in one go.
    """
    rows = _rows(data)
    periods: list[SummaryPeriod] = []
    skipped = 0
    for index in range(0, len(rows), PARSE_SLICE):
        if index:
            await asyncio.sleep(0)
        part, missed = parse_summary(rows[index : index + PARSE_SLICE])
        periods.extend(part)
        skipped += missed
    periods.sort(key=lambda p: (p.start_ms, p.address))
    return periods, skipped


def _rows(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise EkmResponseError("Summary answer is not a JSON array")
    return data


def _parse_row(row: object) -> SummaryPeriod | None:
    if not isinstance(row, Mapping):
        return None
    address = _address(row.get(METER_FIELD))
    start_ms = _ms(row.get(START_FIELD))
    end_ms = _ms(row.get(END_FIELD))
    if address is None or start_ms is None or end_ms is None:
        return None
    values: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for name, raw in row.items():
        if name in _IDENTITY:
            continue
        number = to_number(raw)
        if number is None:
            extra[name] = raw
        else:
            values[name] = number
    return SummaryPeriod(
        address=address, start_ms=start_ms, end_ms=end_ms, values=values, extra=extra
    )


def _address(raw: object) -> str | None:
    """A 12-digit address from a string or a (whole) JSON number, else None."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        return None
    try:
        return normalize_address(raw)
    except ValueError:
        return None


def _ms(raw: object) -> int | None:
    number = to_number(raw)
    return int(number) if number is not None else None


def normalize_mac(mac: str) -> str:
    """A gateway MAC as EKM writes it: lower case, no separators."""
    return mac.strip().lower().replace(":", "").replace("-", "")


def _gateway_mac(row: object) -> str | None:
    if not isinstance(row, Mapping):
        return None
    for name in GATEWAY_FIELDS:
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            return normalize_mac(value)
    return None


def _online(row: Mapping[str, Any]) -> bool | None:
    for name in (STATUS_FIELD, *ONLINE_FIELDS):
        value = _boolish(row.get(name))
        if value is not None:
            return value
    return None


def _boolish(raw: object) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


# --- Windows ---------------------------------------------------------------------------


def zone_info(name: str) -> tzinfo:
    """The timezone ``Area/City`` (or EKM's ``Area~City``); ValueError when unknown."""
    text = name.strip().replace("~", "/")
    if text.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(text)
    except ZoneInfoNotFoundError, ValueError:
        raise ValueError(f"Unknown timezone {name!r}") from None


def zone_param(name: str) -> str:
    """The timezone as EKM's ``timezone=`` wants it: ``Area~City``."""
    text = name.strip().replace("/", "~")
    return "UTC" if text.upper() == "UTC" else text


def split_meters(addresses: list[str]) -> list[list[str]]:
    """Requests' meter lists: at most MAX_METERS_PER_REQUEST each, as even as can be."""
    if not addresses:
        return []
    count = math.ceil(len(addresses) / MAX_METERS_PER_REQUEST)
    size = math.ceil(len(addresses) / count)
    return [addresses[i : i + size] for i in range(0, len(addresses), size)]


def rows_per_meter(meters: int) -> int:
    """Periods one request may cover for this many meters (MAX_ROWS_PER_REQUEST rows)."""
    return max(1, MAX_ROWS_PER_REQUEST // max(1, meters))


def plan_windows(
    report: Report, start: datetime, end: datetime, zone: tzinfo, periods: int
) -> list[Window]:
    """Consecutive UTC windows covering [start, end), each holding ``periods`` periods.

    Cuts fall on the report's local period boundaries (the first window may start inside
    a period, which then counts as one). Wall times are written so that
    EKM, which reads an ambiguous time as its first occurrence, never sees less than the
    window: a start is rounded down, an end rounded up (and moved past a repeated hour).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    begin, finish = start.astimezone(UTC), end.astimezone(UTC)
    return list(_cuts(report, begin, finish, zone, periods))


def _cuts(
    report: Report, begin: datetime, finish: datetime, zone: tzinfo, periods: int
) -> Iterator[Window]:
    cut = begin
    while cut < finish:
        nxt = finish if report is Report.RANGE else period_after(report, cut, periods, zone)
        nxt = min(nxt, finish)
        yield Window(cut, nxt, wall_start(cut, zone), wall_end(nxt, zone))
        cut = nxt


def period_after(report: Report, when: datetime, count: int, zone: tzinfo) -> datetime:
    """The start (UTC) of the ``count``-th local-clock period after the one holding ``when``.

    Periods are aligned as EKM aligns them: quarter hours, hours, local midnight, local
    Sunday midnight, the 1st of the month. Days, weeks and months are counted on the
    calendar, so a 23- or 25-hour day is one period like any other.
    """
    local = when.astimezone(zone)
    if report in _FIXED:
        step = _FIXED[report]
        minutes = local.minute - local.minute % (step // timedelta(minutes=1))
        start = local.replace(minute=minutes if step < _HOUR else 0, second=0, microsecond=0)
        return start.astimezone(UTC) + step * count
    day = local.date()
    if report is Report.DAY:
        day += timedelta(days=count)
    elif report is Report.WEEK:  # weeks start on Sunday (weekday() 6)
        day += timedelta(days=7 * count - (day.weekday() + 1) % 7)
    else:
        months = day.year * 12 + day.month - 1 + count
        day = day.replace(year=months // 12, month=months % 12 + 1, day=1)
    return datetime.combine(day, time(), zone).astimezone(UTC)


def wall_start(when: datetime, zone: tzinfo) -> str:
    """``when`` as a wall time EKM reads as ``when`` or earlier (minutes rounded down)."""
    return when.astimezone(zone).strftime(WALL_TIME_FORMAT)


def wall_end(when: datetime, zone: tzinfo) -> str:
    """``when`` as a wall time EKM reads as ``when`` or later.

    Rounded up to the minute; inside a repeated (fall-back) hour EKM would read the
    first occurrence, up to an hour too early, so the end moves on until it is not.
    """
    candidate = when + timedelta(microseconds=-1)
    candidate = candidate.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while True:
        text = candidate.astimezone(zone).strftime(WALL_TIME_FORMAT)
        read = wall_instant(text, zone)
        if read >= when:
            return text
        candidate += max(when - read, timedelta(minutes=1))


def epoch_ms(when: datetime) -> int:
    """An aware datetime as epoch milliseconds (exact, no float rounding)."""
    return (when - _EPOCH) // timedelta(milliseconds=1)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def wall_instant(text: str, zone: tzinfo) -> datetime:
    """The UTC instant EKM means by a wall time: an ambiguous one is its first occurrence."""
    return datetime.strptime(text, WALL_TIME_FORMAT).replace(tzinfo=zone, fold=0).astimezone(UTC)


__all__ = [
    "MAX_ROWS_PER_REQUEST",
    "SUMMARY_SERVER",
    "SUMMARY_V2_SERVER",
    "EkmSummaryClient",
    "FirstLast",
    "GatewayStatus",
    "Report",
    "SummaryPeriod",
    "Window",
    "parse_summary",
    "plan_windows",
]
