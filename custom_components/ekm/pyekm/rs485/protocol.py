"""EKM Omnimeter v3/v4/v5 RS-485 frames: building, validating and parsing (no I/O).

Reference: ``shared/docs/ekm-rs485.md``. Section numbers below (§) point into it.

Host → meter:
  * requests (no CRC): v3 ``/?`` + address + ``!`` CR LF; v4/v5 A and B add ``00``/``01``;
  * commands ``SOH <cmd> STX ... ETX CRC`` (P1 password, W1 write, R1 table read);
  * the fixed close string ``01 42 30 03 75``.

Meter → host: a 255-byte frame (§2.3) or a single ACK byte (0x06).

The field layouts are data (:data:`V3_LAYOUT`, :data:`V4_A_LAYOUT`, :data:`V4_B_LAYOUT`);
scaling comes from :mod:`pyekm.catalog` so that RS-485 readings carry the same names and
units as the cloud's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
import re
from typing import Final

from ..catalog import (
    CT_RATIOS,
    FIELDS,
    PULSE_OUTPUT_RATIOS,
    Scale,
    Value,
    cos_theta_text,
    derive,
    normalize_address,
    pf_code_from_cos_theta,
)
from ..errors import EkmCrcError, EkmProtocolError
from ..models import MeterReading, Source, now_ms

# --- constants ------------------------------------------------------------------------------

SOH: Final = 0x01
STX: Final = 0x02
ETX: Final = 0x03
ACK: Final = 0x06
NAK: Final = 0x15

FRAME_LEN: Final = 255
TRAILER: Final = b"!\r\n\x03"
TRAILER_OFFSET: Final = 249
REQUEST_TYPE_OFFSET: Final = 247
CLOSE: Final = b"\x01B0\x03u"
WILDCARD: Final = "999999999999"
DEFAULT_PASSWORD: Final = "00000000"  # noqa: S105 - the factory default, not a secret

# 9600 baud, 7E1: 1 start + 7 data + 1 parity + 1 stop = 10 bit times per character.
BAUD_RATE: Final = 9600
BITS_PER_CHAR: Final = 10

# Model codes (§2.3). v.5's code is unknown; anything not v3 is read with the A/B protocol.
V3_MODELS: Final = frozenset({"1017", "1022"})
V4_MODELS: Final = frozenset({"1024"})

# W1 command codes (§5.1).
CODE_MAX_DEMAND_RESET: Final = "0040"
CODE_MAX_DEMAND_PERIOD: Final = "0050"
CODE_SET_TIME: Final = "0060"
CODE_RELAY: Final = {1: "0081", 2: "0082"}
CODE_PULSE_INPUT_RATIO: Final = {1: "00A0", 2: "00A1", 3: "00A2"}
CODE_CT_RATIO: Final = "00D0"
CODE_ZERO_RESETTABLE: Final = "00D3"
CODE_PULSE_OUTPUT_RATIO: Final = "00D4"
CODE_MAX_DEMAND_AUTO_RESET: Final = "00D5"

MAX_RELAY_SECONDS: Final = 9999


class Request(StrEnum):
    """The three data requests; the value is what v4 echoes in bytes 247-248."""

    V3 = "v3"
    A = "00"
    B = "01"


def char_time(baud: int = BAUD_RATE) -> float:
    """Seconds one character takes on the line."""
    return BITS_PER_CHAR / baud


def wire_time(n_bytes: int, baud: int = BAUD_RATE) -> float:
    """Seconds ``n_bytes`` take on the line."""
    return n_bytes * char_time(baud)


# --- CRC (§3) ----------------------------------------------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """The plain CRC-16/MODBUS register (init 0xFFFF, reflected poly 0xA001)."""
    crc = 0xFFFF
    for byte in bytes(data):
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def ekm_crc(data: bytes | bytearray | memoryview) -> bytes:
    """EKM's 2 CRC bytes: the Modbus CRC, each byte masked to 7 bits, low byte first."""
    crc = crc16_modbus(data)
    return bytes((crc & 0x7F, (crc >> 8) & 0x7F))


# --- requests and commands (§2.2, §2.4, §5) -------------------------------------------------------


def request_frame(address: str | int, request: Request = Request.A) -> bytes:
    """``/?`` + 12-digit address (+ ``00``/``01`` on v4) + ``!`` CR LF; no CRC."""
    addr = normalize_address(address)
    kind = b"" if request is Request.V3 else request.value.encode()
    return b"/?" + addr.encode() + kind + b"!\r\n"


def command_frame(command: bytes, body: bytes) -> bytes:
    """``SOH`` + command + ``STX`` + body + ``ETX`` + CRC (over everything after SOH)."""
    covered = command + b"\x02" + body + b"\x03"
    return b"\x01" + covered + ekm_crc(covered)


def password_frame(password: str = DEFAULT_PASSWORD) -> bytes:
    """P1 login with the 8-digit meter password."""
    if not isinstance(password, str) or len(password) != 8 or not _is_digits(password):
        raise ValueError("The meter password must be exactly 8 digits")
    return command_frame(b"P1", b"(" + password.encode() + b")")


def write_frame(code: str, data: str = "") -> bytes:
    """W1 write: 4-character code and ASCII data."""
    _check_code(code)
    if not data.isascii() or any(c in data for c in "()\x01\x02\x03"):
        raise ValueError("W1 data must be plain ASCII without framing characters")
    return command_frame(b"W1", code.encode() + b"(" + data.encode() + b")")


def read_table_frame(code: str) -> bytes:
    """R1 table read (answered by a 255-byte frame); always with ``()`` (§2.4)."""
    _check_code(code)
    return command_frame(b"R1", code.encode() + b"()")


def _check_code(code: str) -> None:
    if len(code) != 4 or not code.isascii() or not code.isalnum():
        raise ValueError("A command code is 4 ASCII letters or digits")


def relay_frame(relay: int, closed: bool, duration_s: int = 0) -> bytes:
    """Relay 1/2 on (closed) or off, held (0) or for 1-9999 s."""
    if relay not in CODE_RELAY:
        raise ValueError("relay must be 1 or 2")
    duration = _int_in_range("duration_s", duration_s, 0, MAX_RELAY_SECONDS)
    return write_frame(CODE_RELAY[relay], f"{1 if closed else 0}{duration:04d}")


def meter_weekday(when: datetime) -> int:
    """The meter's weekday number: 01 = Sunday ... 07 = Saturday (§4.1, not ISO; see §8)."""
    return when.isoweekday() % 7 + 1


def set_time_frame(when: datetime) -> bytes:
    """Set the meter clock: ``YYMMDDWWhhmmss`` with WW 01 = Sunday."""
    if not 2000 <= when.year <= 2099:
        raise ValueError("The meter clock holds years 2000-2099 only")
    text = (
        f"{when.year % 100:02d}{when.month:02d}{when.day:02d}{meter_weekday(when):02d}"
        f"{when.hour:02d}{when.minute:02d}{when.second:02d}"
    )
    return write_frame(CODE_SET_TIME, text)


def zero_resettable_frame() -> bytes:
    """Zero kWh_Rst and Rev_kWh_Rst (v4/v5)."""
    return write_frame(CODE_ZERO_RESETTABLE)


def reset_max_demand_frame() -> bytes:
    """Reset the max demand now."""
    return write_frame(CODE_MAX_DEMAND_RESET, "000000")


def ct_ratio_frame(ratio: int) -> bytes:
    """Set the CT ratio (one of catalog.CT_RATIOS)."""
    if isinstance(ratio, bool) or ratio not in CT_RATIOS:
        raise ValueError(f"CT ratio must be one of {', '.join(map(str, CT_RATIOS))}")
    return write_frame(CODE_CT_RATIO, f"{ratio:04d}")


def pulse_input_ratio_frame(pulse_input: int, ratio: int) -> bytes:
    """Set the ratio of pulse input 1..3 (1-9999)."""
    if pulse_input not in CODE_PULSE_INPUT_RATIO:
        raise ValueError("pulse input must be 1, 2 or 3")
    value = _int_in_range("ratio", ratio, 1, 9999)
    return write_frame(CODE_PULSE_INPUT_RATIO[pulse_input], f"{value:04d}")


def pulse_output_ratio_frame(ratio: int) -> bytes:
    """Set the kWh pulse-output constant (CF_Ratio; one of catalog.PULSE_OUTPUT_RATIOS)."""
    if isinstance(ratio, bool) or ratio not in PULSE_OUTPUT_RATIOS:
        allowed = ", ".join(map(str, PULSE_OUTPUT_RATIOS))
        raise ValueError(f"Pulse output ratio must be one of {allowed}")
    return write_frame(CODE_PULSE_OUTPUT_RATIO, f"{ratio:04d}")


def max_demand_period_frame(period: int) -> bytes:
    """Max-demand period code: 1 = 15 min, 2 = 30 min, 3 = 60 min."""
    value = _int_in_range("max-demand period", period, 1, 3)
    return write_frame(CODE_MAX_DEMAND_PERIOD, str(value))


def max_demand_auto_reset_frame(interval: int) -> bytes:
    """Max-demand auto reset: 0 off, 1 monthly, 2 weekly, 3 daily, 4 hourly (v4/v5)."""
    value = _int_in_range("max-demand auto reset", interval, 0, 4)
    return write_frame(CODE_MAX_DEMAND_AUTO_RESET, str(value))


def _int_in_range(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}")
    return value


# --- response validation (§2.3, §2.6) ------------------------------------------------------------


def frame_crc_ok(frame: bytes) -> bool:
    """Whether the CRC of a 255-byte frame (over bytes 1..252) matches bytes 253-254."""
    return len(frame) == FRAME_LEN and ekm_crc(frame[1:253]) == frame[253:255]


def validate_frame(
    frame: bytes, *, address: str | None = None, request: Request | None = None
) -> None:
    """Check a response in the documented order; raise EkmProtocolError / EkmCrcError.

    ``address`` (12 digits) is compared with the echo unless it is the wildcard.
    ``request`` A or B is compared with the v4 Request_Type echo (bytes 247-248).
    """
    if len(frame) != FRAME_LEN:
        raise EkmProtocolError(f"Response is {len(frame)} bytes, expected {FRAME_LEN}")
    if frame[0] != STX:
        raise EkmProtocolError("Response does not start with STX")
    if frame[TRAILER_OFFSET : TRAILER_OFFSET + 4] != TRAILER:
        raise EkmProtocolError("Response trailer is not '!\\r\\n' + ETX")
    if not frame_crc_ok(frame):
        raise EkmCrcError("Response CRC mismatch")
    echoed = frame[4:16]
    if not _is_digits_bytes(echoed):
        raise EkmProtocolError("Response address is not 12 digits")
    if address is not None and address != WILDCARD and echoed.decode() != address:
        raise EkmProtocolError(f"Response is from meter {echoed.decode()}, expected {address}")
    if request in (Request.A, Request.B):
        echo = frame[REQUEST_TYPE_OFFSET : REQUEST_TYPE_OFFSET + 2]
        if echo != request.value.encode():
            raise EkmProtocolError(f"Response type {echo!r} does not match request {request.value}")


def frame_model(frame: bytes) -> str:
    """The model code as 4 hex digits (bytes 1-2), e.g. '1024'."""
    return frame[1:3].hex()


def frame_protocol(frame: bytes, sent: Request | None = None) -> str:
    """'v3' or 'v4' (v4 and v5 share the protocol) for a validated frame.

    Decided by the model code; for an unknown model (v5, older models) by the request
    that was answered, else by the Request_Type echo.
    """
    model = frame_model(frame)
    if model in V3_MODELS:
        return "v3"
    if model in V4_MODELS:
        return "v4"
    if sent is Request.V3:
        return "v3"
    if sent in (Request.A, Request.B):
        return "v4"
    echo = frame[REQUEST_TYPE_OFFSET : REQUEST_TYPE_OFFSET + 2]
    return "v4" if echo in (b"00", b"01") else "v3"


def frame_request(frame: bytes) -> Request:
    """Which request a validated frame answers: V3, A or B."""
    if frame_protocol(frame) == "v3":
        return Request.V3
    echo = frame[REQUEST_TYPE_OFFSET : REQUEST_TYPE_OFFSET + 2]
    if echo == b"01":
        return Request.B
    if echo == b"00":
        return Request.A
    raise EkmProtocolError(f"Unknown response type {echo!r}")


# --- field layouts (§4.2-§4.4): (name, offset, width) ------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldLayout:
    """One fixed-width ASCII field of a response frame."""

    name: str
    offset: int
    width: int


def _layout(*rows: tuple[str, int, int]) -> tuple[FieldLayout, ...]:
    return tuple(FieldLayout(name, offset, width) for name, offset, width in rows)


V3_LAYOUT: Final = _layout(
    ("kWh_Tot", 16, 8),
    ("kWh_Tariff_1", 24, 8),
    ("kWh_Tariff_2", 32, 8),
    ("kWh_Tariff_3", 40, 8),
    ("kWh_Tariff_4", 48, 8),
    ("Rev_kWh_Tot", 56, 8),
    ("Rev_kWh_Tariff_1", 64, 8),
    ("Rev_kWh_Tariff_2", 72, 8),
    ("Rev_kWh_Tariff_3", 80, 8),
    ("Rev_kWh_Tariff_4", 88, 8),
    ("RMS_Volts_Ln_1", 96, 4),
    ("RMS_Volts_Ln_2", 100, 4),
    ("RMS_Volts_Ln_3", 104, 4),
    ("Amps_Ln_1", 108, 5),
    ("Amps_Ln_2", 113, 5),
    ("Amps_Ln_3", 118, 5),
    ("RMS_Watts_Ln_1", 123, 7),
    ("RMS_Watts_Ln_2", 130, 7),
    ("RMS_Watts_Ln_3", 137, 7),
    ("RMS_Watts_Tot", 144, 7),
    ("Cos_Theta_Ln_1", 151, 4),
    ("Cos_Theta_Ln_2", 155, 4),
    ("Cos_Theta_Ln_3", 159, 4),
    ("RMS_Watts_Max_Demand", 163, 8),
    ("Max_Demand_Period", 171, 1),
    ("Meter_Time", 172, 14),
    ("CT_Ratio", 186, 4),
    ("Pulse_Cnt_1", 190, 8),
    ("Pulse_Cnt_2", 198, 8),
    ("Pulse_Cnt_3", 206, 8),
    ("Pulse_Ratio_1", 214, 4),
    ("Pulse_Ratio_2", 218, 4),
    ("Pulse_Ratio_3", 222, 4),
    ("State_Inputs", 226, 3),
    ("Meter_Status_Code", 247, 2),
)

V4_A_LAYOUT: Final = _layout(
    ("kWh_Tot", 16, 8),
    ("Reactive_Energy_Tot", 24, 8),
    ("Rev_kWh_Tot", 32, 8),
    ("kWh_Ln_1", 40, 8),
    ("kWh_Ln_2", 48, 8),
    ("kWh_Ln_3", 56, 8),
    ("Rev_kWh_Ln_1", 64, 8),
    ("Rev_kWh_Ln_2", 72, 8),
    ("Rev_kWh_Ln_3", 80, 8),
    ("kWh_Rst", 88, 8),
    ("Rev_kWh_Rst", 96, 8),
    ("RMS_Volts_Ln_1", 104, 4),
    ("RMS_Volts_Ln_2", 108, 4),
    ("RMS_Volts_Ln_3", 112, 4),
    ("Amps_Ln_1", 116, 5),
    ("Amps_Ln_2", 121, 5),
    ("Amps_Ln_3", 126, 5),
    ("RMS_Watts_Ln_1", 131, 7),
    ("RMS_Watts_Ln_2", 138, 7),
    ("RMS_Watts_Ln_3", 145, 7),
    ("RMS_Watts_Tot", 152, 7),
    ("Cos_Theta_Ln_1", 159, 4),
    ("Cos_Theta_Ln_2", 163, 4),
    ("Cos_Theta_Ln_3", 167, 4),
    ("Reactive_Pwr_Ln_1", 171, 7),
    ("Reactive_Pwr_Ln_2", 178, 7),
    ("Reactive_Pwr_Ln_3", 185, 7),
    ("Reactive_Pwr_Tot", 192, 7),
    ("Line_Freq", 199, 4),
    ("Pulse_Cnt_1", 203, 8),
    ("Pulse_Cnt_2", 211, 8),
    ("Pulse_Cnt_3", 219, 8),
    ("State_Inputs", 227, 1),
    ("State_Watts_Dir", 228, 1),
    ("State_Out", 229, 1),
    ("kWh_Scale", 230, 1),
    ("Meter_Time", 233, 14),
    ("Request_Type", 247, 2),
)

V4_B_LAYOUT: Final = _layout(
    ("kWh_Tariff_1", 16, 8),
    ("kWh_Tariff_2", 24, 8),
    ("kWh_Tariff_3", 32, 8),
    ("kWh_Tariff_4", 40, 8),
    ("Rev_kWh_Tariff_1", 48, 8),
    ("Rev_kWh_Tariff_2", 56, 8),
    ("Rev_kWh_Tariff_3", 64, 8),
    ("Rev_kWh_Tariff_4", 72, 8),
    ("RMS_Volts_Ln_1", 80, 4),
    ("RMS_Volts_Ln_2", 84, 4),
    ("RMS_Volts_Ln_3", 88, 4),
    ("Amps_Ln_1", 92, 5),
    ("Amps_Ln_2", 97, 5),
    ("Amps_Ln_3", 102, 5),
    ("RMS_Watts_Ln_1", 107, 7),
    ("RMS_Watts_Ln_2", 114, 7),
    ("RMS_Watts_Ln_3", 121, 7),
    ("RMS_Watts_Tot", 128, 7),
    ("Cos_Theta_Ln_1", 135, 4),
    ("Cos_Theta_Ln_2", 139, 4),
    ("Cos_Theta_Ln_3", 143, 4),
    ("RMS_Watts_Max_Demand", 147, 8),
    ("Max_Demand_Period", 155, 1),
    ("Pulse_Ratio_1", 156, 4),
    ("Pulse_Ratio_2", 160, 4),
    ("Pulse_Ratio_3", 164, 4),
    ("CT_Ratio", 168, 4),
    ("Max_Demand_Rst", 172, 1),
    ("CF_Ratio", 173, 4),
    ("Meter_Status_Code_A", 230, 1),
    ("Meter_Status_Code_B", 231, 1),
    ("Meter_Status_Code_C", 232, 1),
    ("Meter_Time", 233, 14),
    ("Request_Type", 247, 2),
)

LAYOUTS: Final[Mapping[Request, tuple[FieldLayout, ...]]] = {
    Request.V3: V3_LAYOUT,
    Request.A: V4_A_LAYOUT,
    Request.B: V4_B_LAYOUT,
}

# B fields a v4 reading takes from the (possibly cached) B frame; A wins for the rest.
B_ONLY_FIELDS: Final = frozenset(
    spec.name for spec in V4_B_LAYOUT if spec.name not in {s.name for s in V4_A_LAYOUT}
)

# Fields kept as the meter's text (not numbers).
_TEXT_FIELDS: Final = frozenset(
    {
        "Meter_Time",
        "Request_Type",
        "Meter_Status_Code",
        "Meter_Status_Code_A",
        "Meter_Status_Code_B",
        "Meter_Status_Code_C",
    }
)
_SIGNED_FIELDS: Final = frozenset(
    {"Reactive_Pwr_Ln_1", "Reactive_Pwr_Ln_2", "Reactive_Pwr_Ln_3", "Reactive_Pwr_Tot"}
)
_DIGITS: Final = re.compile(rb"[0-9]+")
_SIGNED: Final = re.compile(rb" *-?[0-9]+")


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_digits_bytes(raw: bytes) -> bool:
    return _DIGITS.fullmatch(raw) is not None


def _number(name: str, raw: bytes, kwh_divisor: int) -> Value:
    pattern = _SIGNED if name in _SIGNED_FIELDS else _DIGITS
    if pattern.fullmatch(raw) is None:
        raise EkmProtocolError(f"Field {name} is not numeric")
    integer = int(raw)
    spec = FIELDS[name]
    match spec.scale:
        case Scale.TENTH:
            return integer / 10
        case Scale.HUNDREDTH:
            return integer / 100
        case Scale.KWH:
            return integer / kwh_divisor if kwh_divisor != 1 else float(integer)
        case _:
            return integer if spec.value_type is int else float(integer)


def _cos_theta(name: str, raw: bytes) -> str:
    if len(raw) != 4 or raw[:1] not in (b"C", b"L", b" ") or not _is_digits_bytes(raw[1:]):
        raise EkmProtocolError(f"Field {name} is not a power factor")
    if int(raw[1:]) > 100:
        raise EkmProtocolError(f"Field {name} is above 1.00")
    code = pf_code_from_cos_theta(raw.decode())
    return cos_theta_text(code if code is not None else 100)


def decode_fields(
    frame: bytes, layout: tuple[FieldLayout, ...], *, kwh_divisor: int
) -> dict[str, Value]:
    """Scaled values of every field in ``layout`` (frame already validated)."""
    values: dict[str, Value] = {}
    for spec in layout:
        raw = frame[spec.offset : spec.offset + spec.width]
        if spec.name.startswith("Cos_Theta_"):
            values[spec.name] = _cos_theta(spec.name, raw)
        elif spec.name in _TEXT_FIELDS:
            if not raw.isascii() or not raw.decode().isprintable():
                raise EkmProtocolError(f"Field {spec.name} is not printable")
            values[spec.name] = raw.decode()
        else:
            values[spec.name] = _number(spec.name, raw, kwh_divisor)
    return values


def _header(frame: bytes) -> dict[str, Value]:
    return {
        "Meter_Address": frame[4:16].decode(),
        "Model": frame_model(frame),
        "Firmware": frame[3:4].hex(),
    }


def _kwh_scale(frame: bytes) -> int:
    raw = frame[230:231]
    if raw not in (b"0", b"1", b"2"):
        raise EkmProtocolError("kWh_Scale is not 0, 1 or 2")
    return int(raw)


def decode_v3(frame: bytes) -> dict[str, Value]:
    """Header and scaled fields of a validated v3 frame (kWh ÷10)."""
    return _header(frame) | decode_fields(frame, V3_LAYOUT, kwh_divisor=10)


def decode_v4_a(frame: bytes) -> dict[str, Value]:
    """Header and scaled fields of a validated v4/v5 A frame (kWh ÷10**kWh_Scale)."""
    return _header(frame) | decode_fields(frame, V4_A_LAYOUT, kwh_divisor=10 ** _kwh_scale(frame))


def decode_v4_b(frame: bytes, kwh_scale: int) -> dict[str, Value]:
    """Header and scaled fields of a validated v4/v5 B frame, with kWh_Scale from A."""
    if kwh_scale not in (0, 1, 2):
        raise ValueError("kWh_Scale must be 0, 1 or 2")
    return _header(frame) | decode_fields(frame, V4_B_LAYOUT, kwh_divisor=10**kwh_scale)


def _reading(values: dict[str, Value], protocol: str, timestamp_ms: int | None) -> MeterReading:
    stamp = now_ms() if timestamp_ms is None else timestamp_ms
    values["Good"] = 1
    values["Time_Stamp_UTC_ms"] = stamp
    derive(values)
    return MeterReading(
        address=normalize_address(str(values["Meter_Address"])),
        timestamp_ms=stamp,
        source=Source.RS485,
        values=values,
        protocol=protocol,
    )


def parse_v3(
    frame: bytes, *, address: str | None = None, timestamp_ms: int | None = None
) -> MeterReading:
    """Validate and parse a v3 response into a reading."""
    validate_frame(frame, address=address)
    return _reading(decode_v3(frame), "v3", timestamp_ms)


def parse_v4(
    a_frame: bytes,
    b_frame: bytes | None = None,
    *,
    address: str | None = None,
    timestamp_ms: int | None = None,
) -> MeterReading:
    """Validate and parse a v4/v5 A frame, merged with the B-only fields of a B frame."""
    validate_frame(a_frame, address=address, request=Request.A)
    values = decode_v4_a(a_frame)
    if b_frame is not None:
        validate_frame(b_frame, address=str(values["Meter_Address"]), request=Request.B)
        b_values = decode_v4_b(b_frame, int(values["kWh_Scale"]))
        values |= {name: b_values[name] for name in B_ONLY_FIELDS}
    return _reading(values, "v4", timestamp_ms)


def parse_v4_a(
    frame: bytes, *, address: str | None = None, timestamp_ms: int | None = None
) -> MeterReading:
    """Validate and parse a v4/v5 A response alone."""
    return parse_v4(frame, address=address, timestamp_ms=timestamp_ms)


def parse_v4_b(
    frame: bytes,
    *,
    kwh_scale: int,
    address: str | None = None,
    timestamp_ms: int | None = None,
) -> MeterReading:
    """Validate and parse a v4/v5 B response alone (kWh_Scale comes from that meter's A)."""
    validate_frame(frame, address=address, request=Request.B)
    values = decode_v4_b(frame, kwh_scale)
    values["kWh_Scale"] = kwh_scale
    return _reading(values, "v4", timestamp_ms)


def parse_frame(
    frame: bytes,
    *,
    address: str | None = None,
    kwh_scale: int = 0,
    timestamp_ms: int | None = None,
) -> MeterReading:
    """Validate and parse any data response, choosing v3 / A / B from the frame itself."""
    validate_frame(frame, address=address)
    match frame_request(frame):
        case Request.V3:
            return parse_v3(frame, address=address, timestamp_ms=timestamp_ms)
        case Request.A:
            return parse_v4_a(frame, address=address, timestamp_ms=timestamp_ms)
        case _:
            return parse_v4_b(
                frame, kwh_scale=kwh_scale, address=address, timestamp_ms=timestamp_ms
            )


def parse_hex(text: str) -> bytes:
    """Bytes from hex text with optional spaces, colons or a 0x prefix."""
    cleaned = re.sub(r"(0x|[\s:,])", "", text.strip(), flags=re.IGNORECASE)
    try:
        return bytes.fromhex(cleaned)
    except ValueError as err:
        raise ValueError("Not a hex string") from err
