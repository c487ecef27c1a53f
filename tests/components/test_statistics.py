"""Summary periods to hourly energy: the pure part of the history import (no Home Assistant)."""

from __future__ import annotations

from custom_components.ekm.pyekm.summary import SummaryPeriod
from custom_components.ekm.statistics import (
    HOUR_MS,
    Hour,
    cumulative,
    hourly_energy,
    statistic_id,
)

ADDRESS = "000000010389"
QUARTER = HOUR_MS // 4
T0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS  # an hour boundary


def period(
    index: int,
    total: float,
    reverse: float = 0.0,
    *,
    start_total: float | None = None,
    start_reverse: float = 0.0,
    diff: bool = True,
) -> SummaryPeriod:
    """A 15-minute period ``index`` quarters after T0 whose registers end at the values."""
    first = total - 0.25 if start_total is None else start_total
    values = {
        "kWh_Tot_Min": first,
        "kWh_Tot_Max": total,
        "Rev_kWh_Tot_Min": start_reverse,
        "Rev_kWh_Tot_Max": reverse,
        "Count": 15.0,
    }
    if diff:
        values["kWh_Tot_Diff"] = total - first
        values["Rev_kWh_Tot_Diff"] = reverse - start_reverse
    start = T0 + index * QUARTER
    return SummaryPeriod(
        address=ADDRESS, start_ms=start, end_ms=start + QUARTER, values=values, extra={}
    )


def quarters(count: int, per_quarter: float = 0.25, *, first: int = 0) -> list[SummaryPeriod]:
    out = []
    register = 1000.0 + first * per_quarter
    for i in range(first, first + count):
        out.append(period(i, register + per_quarter, start_total=register))
        register += per_quarter
    return out


def test_statistic_ids_are_the_public_contract() -> None:
    assert statistic_id("ekm", ADDRESS, "energy_import") == "ekm:000000010389_energy_import"
    assert statistic_id("ekm", ADDRESS, "energy_export") == "ekm:000000010389_energy_export"


def test_complete_hours_only_in_any_order() -> None:
    periods = quarters(10)  # 2.5 hours
    energy = hourly_energy(reversed(periods), now_ms=T0 + 10 * QUARTER)
    assert [h.start_ms for h in energy.hours] == [T0, T0 + HOUR_MS]
    assert [h.imported for h in energy.hours] == [1.0, 1.0]
    assert energy.last_start_ms == T0 + HOUR_MS
    assert not energy.resets


def test_the_current_hour_waits_for_now() -> None:
    # EKM already has the four quarters, but the hour is not over yet.
    energy = hourly_energy(quarters(4), now_ms=T0 + HOUR_MS - 1)
    assert energy.hours == []
    assert hourly_energy([], now_ms=T0).hours == []


def test_import_is_total_minus_reverse_and_export_is_reverse() -> None:
    periods = [
        period(
            i,
            1000.0 + 0.5 * (i + 1),
            10.0 + 0.2 * (i + 1),
            start_total=1000.0 + 0.5 * i,
            start_reverse=10.0 + 0.2 * i,
        )
        for i in range(4)
    ]
    (hour,) = hourly_energy(periods, now_ms=T0 + HOUR_MS).hours
    assert hour.imported == 1.2  # 4 x (0.5 - 0.2)
    assert hour.exported == 0.8


def test_duplicates_count_once() -> None:
    periods = quarters(4)
    (hour,) = hourly_energy(periods + periods, now_ms=T0 + HOUR_MS).hours
    assert hour.imported == 1.0


def test_gap_between_periods_is_bridged() -> None:
    # Quarters 2 and 3 are missing; the register rose 0.5 kWh meanwhile.
    periods = quarters(2) + quarters(6, first=4)
    energy = hourly_energy(periods, now_ms=T0 + 10 * QUARTER)
    assert [(h.start_ms, h.imported) for h in energy.hours] == [(T0, 0.5), (T0 + HOUR_MS, 1.5)]
    # The sum over everything is the register's change: nothing lost.
    assert sum(h.imported for h in energy.hours) == 2.0


def test_gap_before_the_window_uses_previous() -> None:
    before = period(-8, 1000.0, start_total=999.75)
    energy = hourly_energy(quarters(4), now_ms=T0 + HOUR_MS, previous=before)
    assert energy.hours[0].imported == 1.0  # the register did not move across the gap


def test_register_going_down_never_makes_a_negative_hour() -> None:
    periods = quarters(2)
    # The meter was replaced: the new one starts at 3 kWh.
    periods.append(period(2, 3.25, start_total=1000.5))
    periods.append(period(3, 3.5, start_total=3.25))
    energy = hourly_energy(periods, now_ms=T0 + HOUR_MS)
    (hour,) = energy.hours
    assert hour.imported == 0.75  # 0.5 before, 0 for the replacement quarter, 0.25 after
    assert energy.resets == [T0 + 2 * QUARTER]


def test_reset_across_a_gap() -> None:
    periods = [*quarters(1), period(3, 2.25, start_total=2.0)]
    energy = hourly_energy(periods, now_ms=T0 + HOUR_MS)
    assert energy.hours[0].imported == 0.5  # the new meter's own quarter still counts
    assert energy.resets == [T0 + 3 * QUARTER]


def test_diff_missing_falls_back_to_min_max() -> None:
    periods = [
        period(i, 1000.25 + 0.25 * i, start_total=1000.0 + 0.25 * i, diff=False) for i in range(4)
    ]
    (hour,) = hourly_energy(periods, now_ms=T0 + HOUR_MS).hours
    assert hour.imported == 1.0


def test_periods_without_energy_fields_are_skipped() -> None:
    empty = SummaryPeriod(
        address=ADDRESS, start_ms=T0, end_ms=T0 + QUARTER, values={"Count": 0.0}, extra={}
    )
    energy = hourly_energy([empty, *quarters(3, first=1)], now_ms=T0 + HOUR_MS)
    assert energy.hours[0].imported == 0.75


def test_cumulative_continues_the_stored_sum() -> None:
    hours = [Hour(T0, 1.0, 0.5), Hour(T0 + HOUR_MS, 2.0, 0.0)]
    rows = cumulative(hours, (100.0, 10.0))
    assert [(r[1], r[2]) for r in rows] == [(101.0, 10.5), (103.0, 10.5)]


def test_forward_dip_of_a_quantum_is_carried_not_negative() -> None:
    # Exporting: total and reverse each rise, their difference dips by 0.01 in hour 1.
    def q(i: int, total: float, rev: float, d_total: float, d_rev: float) -> SummaryPeriod:
        return period(i, total, rev, start_total=total - d_total, start_reverse=rev - d_rev)

    # One period per hour (its last quarter; the others are missing, the registers flat).
    periods = [q(3, 100.05, 10.0, 0.05, 0.0)]  # hour 0: +0.05
    periods += [q(7, 100.10, 10.06, 0.05, 0.06)]  # hour 1: -0.01
    periods += [q(11, 100.20, 10.06, 0.10, 0.0)]  # hour 2: +0.10
    energy = hourly_energy(periods, now_ms=T0 + 3 * HOUR_MS)
    assert [h.imported for h in energy.hours] == [0.05, 0.0, 0.09]
    assert [h.exported for h in energy.hours] == [0.0, 0.06, 0.0]
    assert energy.hours[1].deficit == 0.01
    # A deficit handed in from an earlier window is taken from the first hour.
    assert hourly_energy(quarters(4), now_ms=T0 + HOUR_MS, deficit=0.25).hours[0].imported == 0.75
