"""pyekm.rs485.protocol: every CRC and frame vector of ekm-rs485.md, parsers, validation."""

from __future__ import annotations

import contextlib
from datetime import datetime

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.ekm.pyekm.errors import EkmCrcError, EkmError, EkmProtocolError
from custom_components.ekm.pyekm.models import Source
from custom_components.ekm.pyekm.rs485 import protocol as p
from custom_components.ekm.pyekm.rs485.protocol import Request
from ekmsim.fleet import SimClock, SimMeter
from ekmsim.rs485 import encode_frame

# --- Appendix A frames (synthetic, CRCs computed independently) ----------------------------------

V3_FRAME = bytes.fromhex(
    "02 10 17 17 30 30 30 30 31 30 30 30 37 30 37 36 30 30 30 31 32 33 34 35 "
    "30 30 30 31 30 30 30 30 30 30 30 30 32 33 34 35 30 30 30 30 30 30 30 30 "
    "30 30 30 30 30 30 30 30 30 30 30 30 30 31 35 30 30 30 30 30 30 31 30 30 "
    "30 30 30 30 30 30 35 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 "
    "31 32 30 33 31 31 39 38 30 30 30 30 30 30 31 32 35 30 30 30 38 30 30 30 "
    "30 30 30 30 30 30 31 33 38 30 30 30 30 30 38 35 30 30 30 30 30 30 30 30 "
    "30 30 30 32 32 33 30 4c 30 39 35 43 30 39 38 43 30 30 30 30 30 30 30 38 "
    "35 30 30 31 31 38 30 39 31 34 30 36 31 32 34 30 35 31 30 32 30 30 30 30 "
    "30 30 30 30 31 30 30 30 30 30 30 30 32 30 30 30 30 30 30 30 33 30 30 30 "
    "30 31 30 30 30 31 30 30 30 31 30 30 37 30 30 30 30 30 30 30 30 30 30 30 "
    "30 30 30 30 30 30 30 30 30 21 0d 0a 03 50 6d"
)
V4_B_FRAME = bytes.fromhex(
    "02 10 24 19 30 30 30 33 30 30 30 30 32 32 35 35 30 30 31 32 33 34 35 36 "
    "30 30 30 30 32 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 "
    "30 30 30 30 30 35 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 "
    "30 30 30 30 30 30 30 30 31 32 30 33 31 31 39 38 30 30 30 30 30 30 31 32 "
    "35 30 30 30 38 30 30 30 30 30 30 30 30 30 31 33 38 30 30 30 30 30 38 35 "
    "30 30 30 30 30 30 30 30 30 30 30 32 32 33 30 4c 30 39 35 43 30 39 38 43 "
    "30 30 30 30 30 30 34 35 30 30 30 32 30 30 30 31 30 30 31 30 30 31 30 30 "
    "30 32 30 30 31 30 38 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 "
    "30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 "
    "30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 30 31 38 30 39 31 34 30 "
    "36 30 39 34 38 31 33 30 31 21 0d 0a 03 6d 13"
)

V4_ADDRESS = "000300002255"
V3_ADDRESS = "000010007076"


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def build_a_frame(
    *,
    address: str = V4_ADDRESS,
    kwh_scale: int = 2,
    direction: int = 2,
    state_out: int = 3,
    fields: dict[int, bytes] | None = None,
) -> bytes:
    """A v4 A frame written field by field at the documented offsets (§4.3)."""
    body = bytearray(b"0" * 255)
    body[0] = p.STX
    body[1:4] = b"\x10\x24\x19"
    body[4:16] = address.encode()
    layout = {
        16: b"00123456",  # kWh_Tot
        24: b"00004321",  # Reactive_Energy_Tot
        32: b"00002000",  # Rev_kWh_Tot
        88: b"00000150",  # kWh_Rst
        104: b"1203",  # V1
        108: b"1198",
        116: b"00125",  # A1
        131: b"0001380",  # W1
        138: b"0000850",  # W2
        145: b"0000100",  # W3
        152: b"0002330",  # W tot
        159: b"L095",
        163: b"C098",
        167: b" 100",
        171: b"0000450",  # VAR1
        192: b"0000450",
        199: b"6001",  # Hz
        203: b"00000042",  # Pulse_Cnt_1
        227: b"5",  # State_Inputs
        228: str(direction).encode(),
        229: str(state_out).encode(),
        230: str(kwh_scale).encode(),
        233: b"24010701123456",  # Meter_Time (Sunday = 01)
        247: b"00",
    }
    layout |= fields or {}
    for offset, raw in layout.items():
        body[offset : offset + len(raw)] = raw
    body[249:253] = p.TRAILER
    body[253:255] = p.ekm_crc(bytes(body[1:253]))
    return bytes(body)


# --- CRC (§3) ------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    assert p.crc16_modbus(b"123456789") == 0x4B37


def test_crc_register_trace() -> None:
    """§3.3: the register after each byte of the R1 0011 command."""
    data = hx("52 31 02 30 30 31 31 28 29 03")
    trace = [0xBD3E, 0x04FD, 0x4044, 0x2740, 0xE426, 0x0EA4, 0x6FCE, 0x8AEE, 0x92CB, 0x9693]
    assert [p.crc16_modbus(data[: i + 1]) for i in range(len(data))] == trace
    assert p.crc16_modbus(b"") == 0xFFFF
    assert p.ekm_crc(data) == hx("13 16")


@pytest.mark.parametrize(
    ("covered", "raw", "wire"),
    [
        ("50 31 02 28 30 30 30 30 30 30 30 30 29 03", 0xC4B2, "32 44"),
        ("52 31 02 30 30 31 31 28 29 03", 0x9693, "13 16"),
        (
            "57 31 02 30 30 37 34 28 30 33 30 30 30 31 30 34 30 30 30 32 30 37 30 30 30 33 31 31"
            " 30 30 30 34" + " 30" * 24 + " 29 03",
            0x4CE7,
            "67 4C",
        ),
    ],
)
def test_crc_vectors(covered: str, raw: int, wire: str) -> None:
    """§3.4 test vectors (password, R1 0011, W1 0074 of 58 bytes)."""
    data = hx(covered)
    assert p.crc16_modbus(data) == raw
    assert p.ekm_crc(data) == hx(wire)


def test_crc_of_appendix_frames() -> None:
    assert p.crc16_modbus(V3_FRAME[1:253]) == 0xEDD0
    assert V3_FRAME[253:] == hx("50 6D")
    assert p.crc16_modbus(V4_B_FRAME[1:253]) == 0x93ED
    assert V4_B_FRAME[253:] == hx("6D 13")
    assert p.frame_crc_ok(V3_FRAME)
    assert p.frame_crc_ok(V4_B_FRAME)
    assert not p.frame_crc_ok(V3_FRAME[:-1])


def test_wire_timing() -> None:
    assert p.char_time() == pytest.approx(10 / 9600)
    assert p.wire_time(255) == pytest.approx(0.2656, abs=1e-4)


# --- requests and commands (§2.2, §5.2) ---------------------------------------------------------


def test_requests() -> None:
    assert p.request_frame("000350003229", Request.A) == hx(
        "2F 3F 30 30 30 33 35 30 30 30 33 32 32 39 30 30 21 0D 0A"
    )
    assert p.request_frame(350003229, Request.B) == hx(
        "2F 3F 30 30 30 33 35 30 30 30 33 32 32 39 30 31 21 0D 0A"
    )
    # F387: meter 16543 as a v3 request, zero-padded.
    assert p.request_frame(16543, Request.V3) == hx(
        "2f 3f 30 30 30 30 30 30 30 31 36 35 34 33 21 0d 0a"
    )
    assert len(p.request_frame(p.WILDCARD, Request.V3)) == 17
    with pytest.raises(ValueError, match="1 to 12 digits"):
        p.request_frame("12345678901234")


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (p.password_frame(), "01 50 31 02 28 30 30 30 30 30 30 30 30 29 03 32 44"),
        (p.relay_frame(1, True, 5), "01 57 31 02 30 30 38 31 28 31 30 30 30 35 29 03 21 60"),
        (p.ct_ratio_frame(200), "01 57 31 02 30 30 44 30 28 30 32 30 30 29 03 7C 60"),
        (p.max_demand_period_frame(1), "01 57 31 02 30 30 35 30 28 31 29 03 24 03"),
        (p.max_demand_auto_reset_frame(1), "01 57 31 02 30 30 44 35 28 31 29 03 62 62"),
        (
            p.reset_max_demand_frame(),
            "01 57 31 02 30 30 34 30 28 30 30 30 30 30 30 29 03 01 2B",
        ),
        (p.zero_resettable_frame(), "01 57 31 02 30 30 44 33 28 29 03 0F 75"),
        (p.pulse_output_ratio_frame(800), "01 57 31 02 30 30 44 34 28 30 38 30 30 29 03 65 12"),
        (
            p.pulse_input_ratio_frame(1, 1),
            "01 57 31 02 30 30 41 30 28 30 30 30 31 29 03 6B 30",
        ),
        (
            p.write_frame("0060", "24010707123456"),  # as ekmmeters writes it (ISO weekday)
            "01 57 31 02 30 30 36 30 28 32 34 30 31 30 37 30 37 31 32 33 34 35 36 29 03 5C 55",
        ),
        (p.write_frame("00C0", "0102"), "01 57 31 02 30 30 43 30 28 30 31 30 32 29 03 3F 10"),
        (
            p.write_frame("00B0", "1225" + "0" * 76),
            "01 57 31 02 30 30 42 30 28 31 32 32 35" + " 30" * 76 + " 29 03 40 4C",
        ),
        (
            p.write_frame("00D2", "01030609" + "0" * 72),
            "01 57 31 02 30 30 44 32 28 30 31 30 33 30 36 30 39" + " 30" * 72 + " 29 03 17 28",
        ),
        (p.read_table_frame("0011"), "01 52 31 02 30 30 31 31 28 29 03 13 16"),
        (p.read_table_frame("0012"), "01 52 31 02 30 30 31 32 28 29 03 13 52"),
        (p.read_table_frame("0070"), "01 52 31 02 30 30 37 30 28 29 03 1A 6A"),
        (p.read_table_frame("0071"), "01 52 31 02 30 30 37 31 28 29 03 1B 16"),
        (p.read_table_frame("00B0"), "01 52 31 02 30 30 42 30 28 29 03 17 21"),
        (p.CLOSE, "01 42 30 03 75"),
    ],
)
def test_command_vectors(frame: bytes, expected: str) -> None:
    """§5.2 complete example frames."""
    assert frame == hx(expected)


def test_w1_0074_vector() -> None:
    """§3.4: the ALURKER 'set period table 5' frame."""
    data = "0300010400020700031100" + "04" + "0" * 24
    frame = p.write_frame("0074", data)
    assert frame[-2:] == hx("67 4C")


def test_set_time_uses_sunday_one() -> None:
    """§4.1 / §8: the meter counts Sunday as 01 (ekmmeters' ISO weekday is wrong)."""
    sunday = datetime(2024, 1, 7, 12, 34, 56)
    frame = p.set_time_frame(sunday)
    assert frame[:-2] == hx(
        "01 57 31 02 30 30 36 30 28 32 34 30 31 30 37 30 31 31 32 33 34 35 36 29 03"
    )
    assert p.ekm_crc(frame[1:-2]) == frame[-2:]
    assert p.meter_weekday(sunday) == 1
    assert p.meter_weekday(datetime(2024, 1, 8)) == 2  # Monday
    assert p.meter_weekday(datetime(2024, 1, 13)) == 7  # Saturday
    assert p.meter_weekday(datetime(2018, 9, 14)) == 6  # Friday (CONEC's demo frame)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: p.relay_frame(3, True), "relay must be 1 or 2"),
        (lambda: p.relay_frame(1, True, 10000), "duration_s"),
        (lambda: p.relay_frame(1, True, -1), "duration_s"),
        (lambda: p.relay_frame(1, True, True), "duration_s"),
        (lambda: p.ct_ratio_frame(250), "CT ratio"),
        (lambda: p.ct_ratio_frame(True), "CT ratio"),
        (lambda: p.pulse_input_ratio_frame(4, 1), "pulse input"),
        (lambda: p.pulse_input_ratio_frame(1, 0), "ratio"),
        (lambda: p.pulse_input_ratio_frame(1, 10000), "ratio"),
        (lambda: p.pulse_output_ratio_frame(3), "Pulse output ratio"),
        (lambda: p.max_demand_period_frame(4), "max-demand period"),
        (lambda: p.max_demand_period_frame(0), "max-demand period"),
        (lambda: p.max_demand_auto_reset_frame(5), "auto reset"),
        (lambda: p.set_time_frame(datetime(1999, 12, 31)), "2000-2099"),
        (lambda: p.write_frame("00D", ""), "4 ASCII"),
        (lambda: p.write_frame("0060", "12)"), "framing"),
        (lambda: p.read_table_frame("00-1"), "4 ASCII"),
    ],
)
def test_builders_validate(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "password",
    ["1234567", "123456789", "1234567a", "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"],
)
def test_password_validation_never_echoes(password: str) -> None:
    with pytest.raises(ValueError, match="8 digits") as err:
        p.password_frame(password)
    assert password not in str(err.value)


def test_password_frame_custom() -> None:
    frame = p.password_frame("12345678")
    assert frame[:5] == hx("01 50 31 02 28")
    assert frame[5:13] == b"12345678"
    assert p.ekm_crc(frame[1:-2]) == frame[-2:]


# --- validation (§2.6) -----------------------------------------------------------------------


def _recrc(frame: bytes | bytearray) -> bytes:
    data = bytearray(frame)
    data[253:255] = p.ekm_crc(bytes(data[1:253]))
    return bytes(data)


def test_validate_ok_and_wildcard() -> None:
    p.validate_frame(V3_FRAME, address=V3_ADDRESS)
    p.validate_frame(V3_FRAME, address=p.WILDCARD)
    p.validate_frame(V4_B_FRAME, address=V4_ADDRESS, request=Request.B)


def test_validate_errors() -> None:
    with pytest.raises(EkmProtocolError, match="254 bytes"):
        p.validate_frame(V3_FRAME[:-1])
    with pytest.raises(EkmProtocolError, match="STX"):
        p.validate_frame(b"\x05" + V3_FRAME[1:])
    bad_trailer = bytearray(V3_FRAME)
    bad_trailer[251] = 0x0B
    with pytest.raises(EkmProtocolError, match="trailer"):
        p.validate_frame(bytes(bad_trailer))
    flipped = bytearray(V3_FRAME)
    flipped[20] ^= 0x01
    with pytest.raises(EkmCrcError):
        p.validate_frame(bytes(flipped))
    with pytest.raises(EkmProtocolError, match="from meter 000010007076"):
        p.validate_frame(V3_FRAME, address="000010007077")
    with pytest.raises(EkmProtocolError, match="does not match request 00"):
        p.validate_frame(V4_B_FRAME, request=Request.A)
    bad_address = bytearray(V3_FRAME)
    bad_address[10] = ord("x")
    with pytest.raises(EkmProtocolError, match="12 digits"):
        p.validate_frame(_recrc(bad_address))


def test_crc_error_is_protocol_error() -> None:
    assert issubclass(EkmCrcError, EkmProtocolError)


# --- parsing (§4) ---------------------------------------------------------------------------------


def test_parse_v3_appendix() -> None:
    reading = p.parse_v3(V3_FRAME, address=V3_ADDRESS, timestamp_ms=1_700_000_000_000)
    v = reading.values
    assert reading.address == V3_ADDRESS
    assert reading.source is Source.RS485
    assert reading.protocol == "v3"
    assert reading.timestamp_ms == 1_700_000_000_000
    assert v["Model"] == "1017"
    assert v["Firmware"] == "17"
    assert v["kWh_Tot"] == 1234.5
    assert v["Rev_kWh_Tot"] == 15.0
    assert v["Calc_Fwd_kWh_Tot"] == 1219.5
    assert v["Calc_Net_kWh_Tot"] == 1204.5
    assert v["RMS_Volts_Ln_1"] == 120.3
    assert v["Amps_Ln_1"] == 12.5
    assert v["RMS_Watts_Tot"] == 2230
    assert isinstance(v["RMS_Watts_Tot"], int)
    assert v["Cos_Theta_Ln_1"] == "0.95 L"
    assert v["Power_Factor_Ln_1"] == 95
    assert v["Cos_Theta_Ln_2"] == "0.98 C"
    assert v["Power_Factor_Ln_2"] == 102
    assert v["Power_Factor_Ln_3"] == 200  # C000: an idle line
    assert v["RMS_Watts_Max_Demand"] == 850.0
    assert v["Max_Demand_Period"] == 1
    assert v["Meter_Time"] == "18091406124051"
    assert v["CT_Ratio"] == 200
    assert (v["Pulse_Cnt_1"], v["Pulse_Cnt_2"], v["Pulse_Cnt_3"]) == (10, 20, 30)
    assert (v["Pulse_Ratio_1"], v["Pulse_Ratio_2"], v["Pulse_Ratio_3"]) == (1, 1, 1)
    assert v["State_Inputs"] == 7
    assert v["Meter_Status_Code"] == "00"
    assert v["Good"] == 1
    assert "Net_Calc_Watts_Tot" not in v  # v3 has no direction


def test_parse_v4_b_appendix() -> None:
    reading = p.parse_v4_b(V4_B_FRAME, kwh_scale=2, address=V4_ADDRESS)
    v = reading.values
    assert reading.protocol == "v4"
    assert v["kWh_Tariff_1"] == 1234.56
    assert v["Rev_kWh_Tariff_1"] == 5.0
    assert v["RMS_Watts_Max_Demand"] == 4500.0
    assert v["Max_Demand_Period"] == 2
    assert (v["Pulse_Ratio_1"], v["Pulse_Ratio_2"], v["Pulse_Ratio_3"]) == (1, 10, 100)
    assert v["CT_Ratio"] == 200
    assert v["Max_Demand_Rst"] == 1
    assert v["CF_Ratio"] == 800
    assert v["Request_Type"] == "01"
    assert v["Meter_Time"] == "18091406094813"
    # The same frame read with another kWh_Scale from A.
    assert p.parse_v4_b(V4_B_FRAME, kwh_scale=0).values["kWh_Tariff_1"] == 123456.0
    assert p.parse_v4_b(V4_B_FRAME, kwh_scale=1).values["kWh_Tariff_1"] == 12345.6
    with pytest.raises(ValueError, match="kWh_Scale"):
        p.parse_v4_b(V4_B_FRAME, kwh_scale=3)


@pytest.mark.parametrize(("scale", "total"), [(0, 123456.0), (1, 12345.6), (2, 1234.56)])
def test_parse_v4_a_kwh_scale(scale: int, total: float) -> None:
    reading = p.parse_v4_a(build_a_frame(kwh_scale=scale), address=V4_ADDRESS)
    assert reading.values["kWh_Tot"] == total
    assert reading.values["kWh_Scale"] == scale


def test_parse_v4_a_fields() -> None:
    v = p.parse_v4_a(build_a_frame(direction=2, state_out=3)).values
    assert v["Model"] == "1024"
    assert v["Firmware"] == "19"
    assert v["Reactive_Energy_Tot"] == 43.21
    assert v["Rev_kWh_Tot"] == 20.0
    assert v["kWh_Rst"] == 1.5
    assert v["Calc_Fwd_kWh_Tot"] == 1214.56
    assert v["Calc_Net_kWh_Tot"] == 1194.56
    assert v["RMS_Volts_Ln_2"] == 119.8
    assert v["Line_Freq"] == 60.01
    assert v["Reactive_Pwr_Ln_1"] == 450
    assert v["Cos_Theta_Ln_3"] == "1.00"
    assert v["Power_Factor_Ln_3"] == 100
    assert v["Pulse_Cnt_1"] == 42
    assert v["State_Inputs"] == 5
    assert v["State_Out"] == 3  # relay 1 on, relay 2 off
    assert v["Meter_Time"] == "24010701123456"
    assert v["Request_Type"] == "00"
    # State_Watts_Dir 2 = F/F/R: line 3 is exported, so its net watts are negative.
    assert v["Net_Calc_Watts_Ln_1"] == 1380
    assert v["Net_Calc_Watts_Ln_3"] == -100
    assert v["Net_Calc_Watts_Tot"] == 1380 + 850 - 100


def test_parse_v4_merges_b_only_fields() -> None:
    a = build_a_frame(kwh_scale=1, fields={104: b"1111"})
    b = bytearray(V4_B_FRAME)
    reading = p.parse_v4(a, _recrc(b), address=V4_ADDRESS)
    v = reading.values
    assert v["kWh_Tariff_1"] == 12345.6  # B's digits with A's kWh_Scale 1
    assert v["CF_Ratio"] == 800
    assert v["RMS_Volts_Ln_1"] == 111.1  # A wins for the repeated fields
    assert v["Meter_Time"] == "24010701123456"
    assert v["Request_Type"] == "00"
    assert {"kWh_Tariff_1", "CT_Ratio", "Max_Demand_Rst", "CF_Ratio"} <= p.B_ONLY_FIELDS
    assert "RMS_Volts_Ln_1" not in p.B_ONLY_FIELDS


def test_parse_v4_rejects_b_of_another_meter() -> None:
    a = build_a_frame(address="000300002256")
    with pytest.raises(EkmProtocolError, match="expected 000300002256"):
        p.parse_v4(a, V4_B_FRAME)


def test_parse_frame_auto() -> None:
    assert p.parse_frame(V3_FRAME).protocol == "v3"
    assert p.parse_frame(build_a_frame()).values["Request_Type"] == "00"
    assert p.parse_frame(V4_B_FRAME, kwh_scale=2).values["kWh_Tariff_1"] == 1234.56
    assert p.frame_request(V3_FRAME) is Request.V3
    assert p.frame_request(V4_B_FRAME) is Request.B


def test_frame_protocol_unknown_model() -> None:
    unknown = bytearray(build_a_frame())
    unknown[1:3] = b"\x10\x30"
    frame = _recrc(unknown)
    assert p.frame_model(frame) == "1030"
    assert p.frame_protocol(frame) == "v4"  # by the Request_Type echo
    assert p.frame_protocol(frame, Request.V3) == "v3"
    assert p.frame_protocol(frame, Request.B) == "v4"
    odd = bytearray(frame)
    odd[247:249] = b"07"
    assert p.frame_protocol(_recrc(odd)) == "v3"
    v4_odd = bytearray(build_a_frame())
    v4_odd[247:249] = b"07"
    with pytest.raises(EkmProtocolError, match="Unknown response type"):
        p.frame_request(_recrc(v4_odd))


@pytest.mark.parametrize(
    ("offset", "raw", "message"),
    [
        (16, b"0012 456", "kWh_Tot is not numeric"),
        (171, b"000045-", "Reactive_Pwr_Ln_1 is not numeric"),
        (159, b"X095", "Cos_Theta_Ln_1 is not a power factor"),
        (159, b"L1O0", "Cos_Theta_Ln_1 is not a power factor"),
        (159, b"L101", "above 1.00"),
        (230, b"3", "kWh_Scale"),
        (233, b"2401070112345\x7f", "Meter_Time is not printable"),
    ],
)
def test_parse_rejects_bad_fields(offset: int, raw: bytes, message: str) -> None:
    """A frame with a good CRC but impossible contents is an error, never a reading."""
    frame = build_a_frame(fields={offset: raw})
    with pytest.raises(EkmProtocolError, match=message):
        p.parse_v4_a(frame)


def test_parse_accepts_signed_var() -> None:
    frame = build_a_frame(fields={171: b"  -0450"})
    assert p.parse_v4_a(frame).values["Reactive_Pwr_Ln_1"] == -450


def test_parse_hex() -> None:
    assert p.parse_hex("0x01 42:30,03 75") == p.CLOSE
    assert p.parse_hex("014230 0375") == p.CLOSE
    with pytest.raises(ValueError, match="Not a hex string"):
        p.parse_hex("zz")


# --- the simulator's independent encoder agrees with the parsers ---------------------------------


@pytest.mark.parametrize(("protocol", "scale"), [("v3", 1), ("v4", 0), ("v4", 2), ("v5", 1)])
def test_simulator_frames_parse_back(protocol: str, scale: int) -> None:
    clock = SimClock(start=1_790_000_000, manual=True)
    meter = SimMeter(
        address="000300004455", protocol=protocol, kwh_scale=scale, clock=clock, solar=True
    )
    snap = dict(meter.snapshot())
    if protocol == "v3":
        reading = p.parse_v3(encode_frame(meter, "v3", snap), address=meter.address)
    else:
        a = encode_frame(meter, "a", snap)
        b = encode_frame(meter, "b", snap)
        reading = p.parse_v4(a, b, address=meter.address)
        assert reading.values["kWh_Scale"] == scale
    for name, expected in snap.items():
        if name == "kWh_Scale" and protocol == "v3":
            continue
        got = reading.values[name]
        if isinstance(expected, float):
            assert got == pytest.approx(expected, abs=0.051), name
        else:
            assert got == expected, name


# --- property tests: never anything but a reading or a typed error --------------------------------


def _parse_any(data: bytes) -> None:
    for kwh_scale in (0, 2):
        try:
            reading = p.parse_frame(data, kwh_scale=kwh_scale)
        except EkmError:
            continue
        assert reading.source is Source.RS485
        assert len(reading.address) == 12


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_property_random_bytes(data: bytes) -> None:
    _parse_any(data)
    for parse in (p.parse_v3, p.parse_v4_a):
        with contextlib.suppress(EkmError):
            parse(data)


_BODY_CHARS = st.sampled_from(b"0123456789 CL-!\r\n\x02\x03\x10\x24\x17\x7fx")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_BODY_CHARS, min_size=252, max_size=252), st.sampled_from([b"00", b"01", b"77"]))
def test_property_framed_random_bodies(body: list[int], kind: bytes) -> None:
    """Well-framed frames (STX, trailer, good CRC) with arbitrary contents."""
    frame = bytearray(b"\x02" + bytes(body) + b"\x00\x00")
    frame[247:249] = kind
    frame[249:253] = p.TRAILER
    _parse_any(_recrc(frame))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([V3_FRAME, V4_B_FRAME, build_a_frame()]),
    st.lists(st.tuples(st.integers(0, 254), st.integers(0, 255)), min_size=1, max_size=6),
    st.booleans(),
)
def test_property_mutated_frames(frame: bytes, edits: list[tuple[int, int]], fix_crc: bool) -> None:
    data = bytearray(frame)
    for index, value in edits:
        data[index] = value
    _parse_any(_recrc(data) if fix_crc else bytes(data))
