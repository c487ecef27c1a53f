"""Constants for the EKM Metering integration."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
import logging
from typing import Final

DOMAIN: Final = "ekm"
LOGGER = logging.getLogger(__package__)
MANUFACTURER: Final = "EKM Metering"

CONF_SERVER: Final = "server"
CONF_ADVANCED: Final = "advanced"
CONF_SCAN_INTERVAL: Final = "scan_interval"
CONF_STALE_THRESHOLD: Final = "stale_threshold"
CONF_METERS: Final = "meters"
CONF_EXCLUDED_METERS: Final = "excluded_meters"

# EKM's data send interval is 60 s or more: polling faster gains nothing.
DEFAULT_SCAN_INTERVAL: Final = 60
MIN_SCAN_INTERVAL: Final = 60
MAX_SCAN_INTERVAL: Final = 3600
# A meter whose newest good read is older than this is unavailable.
DEFAULT_STALE_THRESHOLD: Final = 600
MIN_STALE_THRESHOLD: Final = 120
MAX_STALE_THRESHOLD: Final = 86400
# The account (gateways, meters) changes rarely: re-read it this often.
ACCOUNT_REFRESH_INTERVAL: Final = timedelta(minutes=30)

# Push (MQTT). Gateway keys live in the entry's options as {key: gateway MAC}.
CONF_GATEWAY_KEYS: Final = "gateway_keys"
CONF_NEW_GATEWAY_KEYS: Final = "new_gateway_keys"
CONF_MQTT_SERVER: Final = "mqtt_server"
CONF_MQTT_CA_FILE: Final = "mqtt_ca_file"
# While a gateway's stream is up its meters are polled only this often (safety net).
SAFETY_NET_INTERVAL: Final = timedelta(minutes=15)

# The kind of EKM Push key an entry holds (the Account API's key_type), in entry.data.
CONF_KEY_TYPE: Final = "key_type"
CONF_USE_PUSH: Final = "use_push"


class KeyType(StrEnum):
    """EKM's key kinds: the whole account, one Push3 gateway (also its MQTT key), one meter."""

    ACCOUNT = "account"
    GATEWAY = "gateway"
    METER = "meter"

    @classmethod
    def of(cls, text: str | None) -> KeyType:
        """The kind EKM's ``key_type`` names; an unknown or missing one is an account key."""
        try:
            return cls(str(text or "").lower())
        except ValueError:
            return cls.ACCOUNT


# Cloud control: an EKM API token (Trigger API; some Settings API editions) in entry.data.
CONF_API_TOKEN: Final = "api_token"  # noqa: S105 (a field name)

# History (Summary API into long-term statistics) and gateway status (Summary V2 GStat).
CONF_HISTORY: Final = "import_history"
CONF_HISTORY_SINCE: Final = "history_since"
GATEWAY_STATUS_INTERVAL: Final = timedelta(minutes=5)

# Entry types: an EKM Push account (cloud) or a local RS-485 meter bus.
CONF_ENTRY_TYPE: Final = "entry_type"
ENTRY_CLOUD: Final = "cloud"
ENTRY_RS485: Final = "rs485"
# A Push3 gateway read on the local network (its readMeter LAN API), no cloud.
ENTRY_LAN: Final = "lan"
CONF_LAN_KEY: Final = "lan_key"
# The Push3 answers from what it last read of each meter: polling it often costs the
# meters nothing. ha-ekm-local's default staleness (90 s) is kept.
DEFAULT_LAN_SCAN_INTERVAL: Final = 10
MIN_LAN_SCAN_INTERVAL: Final = 2
DEFAULT_LAN_STALE_THRESHOLD: Final = 90
MIN_LAN_STALE_THRESHOLD: Final = 20
CONF_PASSWORDS: Final = "passwords"
CONF_SINGLE_METER: Final = "single_meter"
CONF_ADDRESSES: Final = "addresses"
CONF_FULL_READ_EVERY: Final = "full_read_every"
WILDCARD_ADDRESS: Final = "999999999999"
# A v4/v5 read (A + B + close) takes about 0.65 s on the 9600 baud line; with B every
# few reads a meter needs about 0.34 s (scripts/bench rs485). The poll interval allows
# 1 s per meter, which leaves room for a retry.
RS485_SECONDS_PER_METER: Final = 1.0
DEFAULT_RS485_SCAN_INTERVAL: Final = 5
MIN_RS485_SCAN_INTERVAL: Final = 2
DEFAULT_RS485_STALE_THRESHOLD: Final = 60
MIN_RS485_STALE_THRESHOLD: Final = 15
DEFAULT_FULL_READ_EVERY: Final = 10


def rs485_min_interval(meters: int) -> int:
    """The shortest poll interval (s) the bus allows for this many meters."""
    return max(MIN_RS485_SCAN_INTERVAL, int(-(-meters * RS485_SECONDS_PER_METER // 1)))
