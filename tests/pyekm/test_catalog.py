"""The field catalog, normalized models, typed errors and redaction helpers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from custom_components.ekm.pyekm import FIELDS, Kind, MeterReading, Source, normalize_address
from custom_components.ekm.pyekm.catalog import (
    CT_RATIOS,
    ENUMS,
    PULSE_OUTPUT_RATIOS,
    Scale,
    convert,
    cos_theta_text,
    derive,
    line_is_reverse,
    model_name,
    normalize_values,
    pf_code_from_cos_theta,
    power_factor,
    relay_states,
    state_out_code,
    to_number,
)
from custom_components.ekm.pyekm.errors import (
    STATUS_MEANINGS,
    EkmApiError,
    EkmRateLimitError,
    EkmServerError,
    EkmStatus,
)
from custom_components.ekm.pyekm.models import Account, DeviceInfo, DeviceKind, now_ms
from custom_components.ekm.pyekm.redact import (
    REDACTED,
    mask,
    redact_text,
    redact_url,
    scrub_urls,
)
from ekmsim import fleet as sim_fleet

# --- catalog -------------------------------------------------------------------------------


def test_catalog_entries_are_consistent() -> None:
    for name, spec in FIELDS.items():
        assert spec.name == name
        assert spec.protocols <= {"v3", "v4"}
        if spec.kind is Kind.ENERGY and not spec.derived:
            assert spec.scale is Scale.KWH
            assert spec.unit == "kWh"
        if spec.line is not None:
            assert name.endswith(f"_{spec.line}")
        if spec.tariff is not None:
            assert name.endswith(f"_{spec.tariff}")
    assert FIELDS["kWh_Tot"].monotonic
    assert FIELDS["kWh_Rst"].resettable
    assert not FIELDS["kWh_Rst"].monotonic
    assert FIELDS["Calc_Net_kWh_Tot"].derived


def test_catalog_covers_what_the_simulated_meters_report() -> None:
    """Every field a simulated v3/v4 meter reports is in the catalog for its protocol."""
    for protocol, names in (("v3", sim_fleet.V3_FIELDS), ("v4", sim_fleet.V4_FIELDS)):
        for name in names:
            assert protocol in FIELDS[name].protocols, name
    v4_only = {n for n, s in FIELDS.items() if s.protocols == {"v4"} and not s.derived}
    assert v4_only.isdisjoint(sim_fleet.V3_FIELDS)


def test_allowed_settings_match_the_simulator() -> None:
    assert CT_RATIOS == sim_fleet.CT_RATIOS
    assert PULSE_OUTPUT_RATIOS == sim_fleet.PULSE_OUTPUT_RATIOS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.5", 12.5),
        (" 7 ", 7.0),
        (3, 3.0),
        (2.25, 2.25),
        ("", None),
        ("   ", None),
        ("abc", None),
        ("nan", None),
        ("inf", None),
        (math.inf, None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_to_number(raw: object, expected: float | None) -> None:
    assert to_number(raw) == expected


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("kWh_Tot", "1234.56", 1234.56),
        ("kWh_Tot", 1234, 1234.0),
        ("kWh_Tot", "n/a", None),
        ("RMS_Watts_Tot", "532", 532),
        ("RMS_Watts_Tot", 532.0, 532),
        ("RMS_Watts_Tot", "532.5", 532.5),
        ("RMS_Watts_Tot", "x", None),
        ("Good", "1", 1),
        ("Model", " 1024 ", "1024"),
        ("Firmware", 19, "19"),
        ("Firmware", 1.5, "1.5"),
        ("Firmware", True, None),
        ("Firmware", None, None),
        ("Meter_Time", ["x"], None),
        ("Unknown_Number", "12.5", 12.5),
        ("Unknown_Text", " hi ", "hi"),
        ("Unknown_Int", 7, 7.0),
        ("Unknown_List", [1, 2], None),
        ("PERR.NR", "0", "0"),
    ],
)
def test_convert(name: str, raw: object, expected: Any) -> None:
    value = convert(name, raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("L099", 99),
        ("C083", 117),
        ("C000", 200),
        (" 100", 100),
        ("100", 100),
        ("0.99 L", 99),
        ("0.83 C", 117),
        ("1.00 ", 100),
        ("0.00 C", 200),
        ("", None),
        ("   ", None),
        ("x.yz L", None),
        ("Lxyz", None),
    ],
)
def test_pf_code_from_cos_theta(text: str, code: int | None) -> None:
    assert pf_code_from_cos_theta(text) == code


@pytest.mark.parametrize(
    ("code", "pf", "kind", "text"),
    [
        (95, 0.95, "lagging", "0.95 L"),
        (0, 0.0, "lagging", "0.00 L"),
        (100, 1.0, None, "1.00"),
        (117, 0.83, "leading", "0.83 C"),
        (200, 0.0, "leading", "0.00 C"),
    ],
)
def test_power_factor_both_ways(code: int, pf: float, kind: str | None, text: str) -> None:
    value, direction = power_factor(code)
    assert value == pytest.approx(pf)
    assert direction == kind
    assert cos_theta_text(code) == text
    assert pf_code_from_cos_theta(text) == code


def test_every_pf_code_round_trips() -> None:
    for code in range(201):
        assert pf_code_from_cos_theta(cos_theta_text(code)) == code


@pytest.mark.parametrize(
    ("code", "pattern"),
    [
        (1, "FFF"),
        (2, "FFR"),
        (3, "FRF"),
        (4, "RFF"),
        (5, "FRR"),
        (6, "RFR"),
        (7, "RRF"),
        (8, "RRR"),
    ],
)
def test_line_direction(code: int, pattern: str) -> None:
    assert [line_is_reverse(code, n) for n in (1, 2, 3)] == [c == "R" for c in pattern]
    assert ENUMS["State_Watts_Dir"][code].split("_") == [
        "reverse" if c == "R" else "forward" for c in pattern
    ]


def test_line_direction_unknown() -> None:
    assert line_is_reverse(0, 1) is None
    assert line_is_reverse(9, 1) is None
    assert line_is_reverse(1, 0) is None
    assert line_is_reverse(1, 4) is None


@pytest.mark.parametrize(
    ("state_out", "relays"),
    [(1, (False, False)), (2, (False, True)), (3, (True, False)), (4, (True, True))],
)
def test_relay_state_out_codes(state_out: int, relays: tuple[bool, bool]) -> None:
    assert relay_states(state_out) == relays
    assert state_out_code(*relays) == state_out
    names = ENUMS["State_Out"][state_out].split("_")
    assert names == ["on" if r else "off" for r in relays]


def test_relay_state_out_unknown() -> None:
    assert relay_states(0) is None
    assert relay_states(5) is None


def test_simulated_meter_relays_use_the_same_codes() -> None:
    meter = sim_fleet.SimMeter(address="000000000001", clock=sim_fleet.SimClock(0, manual=True))
    for relays in ((False, False), (False, True), (True, False), (True, True)):
        meter.relays = list(relays)
        assert relay_states(int(meter.snapshot()["State_Out"])) == relays


def test_normalize_values_derives_fields() -> None:
    values = normalize_values(
        {
            "kWh_Tot": "100.5",
            "Rev_kWh_Tot": "20.25",
            "RMS_Watts_Ln_1": "500",
            "RMS_Watts_Ln_2": "300",
            "RMS_Watts_Ln_3": "0",
            "State_Watts_Dir": "3",  # F R F
            "Cos_Theta_Ln_1": "0.95 L",
            "Power_Factor_Ln_2": "117",
            "Cos_Theta_Ln_3": "bogus",
            "Junk": None,
        }
    )
    assert values["Net_Calc_Watts_Ln_1"] == 500
    assert values["Net_Calc_Watts_Ln_2"] == -300
    assert values["Net_Calc_Watts_Ln_3"] == 0
    assert values["Net_Calc_Watts_Tot"] == 200
    assert values["Calc_Fwd_kWh_Tot"] == 80.25
    assert values["Calc_Net_kWh_Tot"] == 60.0
    assert values["Power_Factor_Ln_1"] == 95
    assert values["Cos_Theta_Ln_2"] == "0.83 C"
    assert "Power_Factor_Ln_3" not in values
    assert "Junk" not in values


def test_derive_keeps_values_ekm_sent_and_needs_every_line() -> None:
    values: dict[str, Any] = {
        "State_Watts_Dir": 8,
        "RMS_Watts_Ln_1": 10,
        "RMS_Watts_Ln_2": 20,
        "Net_Calc_Watts_Ln_1": 999,
    }
    derive(values)
    assert values["Net_Calc_Watts_Ln_1"] == 999
    assert values["Net_Calc_Watts_Ln_2"] == -20
    assert "Net_Calc_Watts_Tot" not in values  # line 3 missing
    unknown: dict[str, Any] = {"State_Watts_Dir": 9, "RMS_Watts_Ln_1": 10}
    derive(unknown)
    assert "Net_Calc_Watts_Ln_1" not in unknown


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        ("10389", "000000010389"),
        (10389, "000000010389"),
        (" 000000010389 ", "000000010389"),
        ("meter_000000010389", "000000010389"),
        ("123456789012", "123456789012"),
    ],
)
def test_normalize_address(raw: str | int, address: str) -> None:
    assert normalize_address(raw) == address


@pytest.mark.parametrize("raw", ["", "abc", "1234567890123", "12-34", "meter_", "-1"])
def test_normalize_address_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="12 digits"):
        normalize_address(raw)


@pytest.mark.parametrize(
    ("code", "protocol", "name"),
    [
        ("1017", None, "Omnimeter I v.3"),
        ("1024", "v4", "Omnimeter Pulse v.4"),
        ("9999", "v3", "Omnimeter v.3"),
        (None, "v4", "Omnimeter v.4"),
        ("", "v5", "Omnimeter v.5"),
        (None, None, "Omnimeter"),
    ],
)
def test_model_name(code: str | None, protocol: str | None, name: str) -> None:
    assert model_name(code, protocol) == name


# --- models --------------------------------------------------------------------------------


def test_meter_reading_from_raw() -> None:
    reading = MeterReading.from_raw(
        "10389", {"Time_Stamp_UTC_ms": "1790000000000", "kWh_Tot": "1.5"}, Source.RS485
    )
    assert reading.address == "000000010389"
    assert reading.timestamp_ms == 1_790_000_000_000
    assert reading.timestamp.year == 2026
    assert reading.protocol is None

    before = now_ms()
    stamped_now = MeterReading.from_raw(10389, {"kWh_Tot": 2}, Source.MQTT, protocol="v4")
    assert stamped_now.timestamp_ms >= before
    assert stamped_now.protocol == "v4"
    explicit = MeterReading.from_raw(1, {}, Source.CLOUD, timestamp_ms=5)
    assert explicit.timestamp_ms == 5
    assert explicit.number("kWh_Tot") is None


def test_account_addresses() -> None:
    account = Account(
        key_type="account",
        host=None,
        gateways=(),
        devices=(
            DeviceInfo(address="000000000002"),
            DeviceInfo(address="000000000001", kind=DeviceKind.IOSTACK),
        ),
    )
    assert account.addresses == ["000000000001", "000000000002"]
    assert account.raw == {}


# --- errors --------------------------------------------------------------------------------


def test_error_messages() -> None:
    assert str(EkmRateLimitError()) == "Rate limited by the EKM server"
    assert str(EkmRateLimitError(2.5)) == "Rate limited by the EKM server, retry after 2.5 s"
    assert str(EkmServerError(502)) == "EKM server answered HTTP 502"
    assert str(EkmServerError(500, "Internal")) == "EKM server answered HTTP 500 (Internal)"
    unknown = EkmApiError(1999)
    assert unknown.meaning == "unknown EKM status"
    assert not unknown.is_no_data
    assert set(STATUS_MEANINGS) == set(EkmStatus)
    assert all(EkmApiError(code).is_no_data == (code < 1004) for code in EkmStatus)


# --- redaction -----------------------------------------------------------------------------


def test_redact_url() -> None:
    url = "https://user:pw@api.ekmpush.com/readMeter?meters=1~2&key=SECRETKEY&Token=t0k3n&cnt=1"
    redacted = redact_url(url)
    assert "SECRETKEY" not in redacted
    assert "t0k3n" not in redacted
    assert "pw" not in redacted
    assert redacted.startswith(f"https://{REDACTED}@api.ekmpush.com/readMeter?")
    assert "meters=1~2" in redacted
    assert "cnt=1" in redacted
    assert redact_url("http://host/path") == "http://host/path"


def test_redact_text_and_mask() -> None:
    text = "key MTAxMDoyMDIw and pin 123 and MTAxMDoyMDIwXX"
    assert redact_text(text, ["MTAxMDoyMDIw", "MTAxMDoyMDIwXX", "123", ""]) == (
        f"key {REDACTED} and pin 123 and {REDACTED}"
    )
    assert mask("MTAxMDoyMDIw") == "…MDIw"
    assert mask("short") == "…"
    assert scrub_urls("GET /readMeter?key=abc&cnt=1 and ?token=xyz") == (
        f"GET /readMeter?key={REDACTED}&cnt=1 and ?token={REDACTED}"
    )
