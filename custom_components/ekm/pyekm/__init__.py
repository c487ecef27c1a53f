"""pyekm: asyncio access to EKM Metering devices.

Cloud (EKM Push Account, Realtime and Summary APIs), MQTT push, a Push3's local readMeter
API (:class:`EkmLanClient`) and local RS-485 all produce the same :class:`MeterReading`: EKM
field names, numbers already scaled, a timestamp and the source; :class:`EkmControlClient`
sends commands (relays) and manages triggers through the Settings and Trigger APIs. Nothing
here imports Home Assistant; HTTP goes through an injected ``aiohttp.ClientSession``.
"""

from .catalog import FIELDS, FieldSpec, Kind, normalize_address
from .cloud import DEFAULT_SERVER, EkmCloudClient, ReadSet, parse_read_meter
from .control import CLIENT_NAME, CommandReceipt, EkmControlClient
from .errors import (
    EkmApiError,
    EkmAuthError,
    EkmCommandError,
    EkmConnectionError,
    EkmCrcError,
    EkmError,
    EkmForbiddenError,
    EkmInvalidParametersError,
    EkmNoResponseError,
    EkmPasswordError,
    EkmProtocolError,
    EkmRateLimitError,
    EkmRequestError,
    EkmResponseError,
    EkmServerError,
    EkmTimeoutError,
    EkmTokenError,
    EkmTokenRequiredError,
    EkmTriggerNotFoundError,
    EkmUnsupportedError,
)
from .lan import DEFAULT_LAN_PORT, EkmLanClient, lan_base_url
from .models import Account, DeviceInfo, DeviceKind, GatewayInfo, MeterReading, Source
from .summary import (
    SUMMARY_SERVER,
    SUMMARY_V2_SERVER,
    EkmSummaryClient,
    FirstLast,
    GatewayStatus,
    Report,
    SummaryPeriod,
    parse_summary,
)

__version__ = "0.1.0"

__all__ = [
    "CLIENT_NAME",
    "DEFAULT_LAN_PORT",
    "DEFAULT_SERVER",
    "FIELDS",
    "SUMMARY_SERVER",
    "SUMMARY_V2_SERVER",
    "Account",
    "CommandReceipt",
    "DeviceInfo",
    "DeviceKind",
    "EkmApiError",
    "EkmAuthError",
    "EkmCloudClient",
    "EkmCommandError",
    "EkmConnectionError",
    "EkmControlClient",
    "EkmCrcError",
    "EkmError",
    "EkmForbiddenError",
    "EkmInvalidParametersError",
    "EkmLanClient",
    "EkmNoResponseError",
    "EkmPasswordError",
    "EkmProtocolError",
    "EkmRateLimitError",
    "EkmRequestError",
    "EkmResponseError",
    "EkmServerError",
    "EkmSummaryClient",
    "EkmTimeoutError",
    "EkmTokenError",
    "EkmTokenRequiredError",
    "EkmTriggerNotFoundError",
    "EkmUnsupportedError",
    "FieldSpec",
    "FirstLast",
    "GatewayInfo",
    "GatewayStatus",
    "Kind",
    "MeterReading",
    "ReadSet",
    "Report",
    "Source",
    "SummaryPeriod",
    "lan_base_url",
    "normalize_address",
    "parse_read_meter",
    "parse_summary",
]
