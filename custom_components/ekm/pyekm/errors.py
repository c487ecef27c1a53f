"""Typed errors raised by pyekm.

Every error message is safe to log: no key, token or password is ever part of it.
"""

from __future__ import annotations

from enum import IntEnum


class EkmError(Exception):
    """Base class of every pyekm error."""


# --- Cloud (HTTP) ---------------------------------------------------------------------


class EkmConnectionError(EkmError):
    """The server could not be reached (DNS, refused, reset, TLS)."""


class EkmTimeoutError(EkmConnectionError):
    """The server did not answer in time."""


class EkmAuthError(EkmError):
    """The key is invalid or was revoked (HTTP 401, or EKM's invalid-key answers)."""


class EkmForbiddenError(EkmAuthError):
    """The key is valid but not allowed to do this (HTTP 403)."""


class EkmTokenError(EkmAuthError):
    """The server rejected the key or the API token (HTTP 401/403 to a request with a token).

    EKM's Settings and Trigger APIs take an API bearer token besides the key (§6, §7, §13);
    an invalid or revoked token, a READ-only token on a write, or a key the token may not
    use all look the same from here.
    """


class EkmTokenRequiredError(EkmTokenError):
    """An API token is needed and none was given.

    Raised before any request for a Trigger API call without a token, and for a 401 from
    ``sendCommand`` to a request without one (a server that requires a token).
    """


class EkmRateLimitError(EkmError):
    """HTTP 429. ``retry_after`` is the server's hint in seconds, if it gave one."""

    def __init__(self, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        hint = f", retry after {retry_after:g} s" if retry_after is not None else ""
        super().__init__(f"Rate limited by the EKM server{hint}")


class EkmServerError(EkmError):
    """HTTP 5xx, or another unexpected HTTP status."""

    def __init__(self, status: int, reason: str = "") -> None:
        self.status = status
        super().__init__(f"EKM server answered HTTP {status}{f' ({reason})' if reason else ''}")


class EkmResponseError(EkmError):
    """The body is not what the API documents: not JSON, or the wrong shape."""


class EkmRequestError(EkmResponseError):
    """EKM rejected the request's arguments: a 200 plain-text body starting with "Error".

    That is how the Summary API answers a bad report, date, timezone, limit or meter list
    (ekm-cloud-api.md §3.2). The message quotes EKM's first line without key or URL.
    """


class EkmInvalidParametersError(EkmRequestError):
    """HTTP 400 from the Settings or Trigger API: EKM refused the parameters or the body.

    ``detail`` is EKM's ``error`` text without key, token or URL (at most 200 characters,
    empty when EKM gave none); the message quotes it.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"EKM rejected the request's parameters{f': {detail}' if detail else ''}")


class EkmTriggerNotFoundError(EkmError):
    """HTTP 404 from the Trigger API: no trigger with that id (for this key and token)."""


class EkmStatus(IntEnum):
    """EKM API status codes (documented by EKM, envelope shape unknown)."""

    NO_DATA = 1000
    NO_DATA_IN_RANGE = 1001
    NO_DATA_BEFORE_FIRST_REPORT = 1002
    NO_DATA_AFTER_LAST_REPORT = 1003
    TIMEZONE_NOT_SUPPORTED = 1004
    INVALID_QUERY = 1100
    INVALID_FORMAT = 1101
    INVALID_VALUE = 1102
    INVALID_PARAMETER = 1103
    INVALID_METER = 1200
    UNEXPECTED = 1300


STATUS_MEANINGS: dict[int, str] = {
    EkmStatus.NO_DATA: "no data for the requested meters",
    EkmStatus.NO_DATA_IN_RANGE: "no data for the requested meters in that date range",
    EkmStatus.NO_DATA_BEFORE_FIRST_REPORT: "no data: the meter had not reported yet",
    EkmStatus.NO_DATA_AFTER_LAST_REPORT: "no data: the meter stopped reporting",
    EkmStatus.TIMEZONE_NOT_SUPPORTED: "timezone not supported for this date range",
    EkmStatus.INVALID_QUERY: "invalid query",
    EkmStatus.INVALID_FORMAT: "invalid format",
    EkmStatus.INVALID_VALUE: "invalid value",
    EkmStatus.INVALID_PARAMETER: "invalid parameter",
    EkmStatus.INVALID_METER: "a meter is not valid for this key",
    EkmStatus.UNEXPECTED: "unexpected error on the EKM server",
}


class EkmApiError(EkmError):
    """EKM answered with one of its status codes 1000-1300."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.meaning = STATUS_MEANINGS.get(code, "unknown EKM status")
        super().__init__(f"EKM status {code}: {self.meaning}")

    @property
    def is_no_data(self) -> bool:
        """True for 1000-1003: the request was fine, there is just nothing to return."""
        return 1000 <= self.code <= 1003


# --- RS-485 / MQTT ---------------------------------------------------------------------


class EkmProtocolError(EkmError):
    """A frame failed validation (length, STX, trailer, CRC, address or type echo)."""


class EkmCrcError(EkmProtocolError):
    """The frame's CRC does not match its contents."""


class EkmNoResponseError(EkmConnectionError):
    """The meter stayed silent (wrong address, wiring, or the meter is off)."""


class EkmPasswordError(EkmError):
    """The meter refused the password (no ACK to P1)."""


class EkmCommandError(EkmError):
    """The meter did not acknowledge a write command."""


class EkmUnsupportedError(EkmError):
    """The meter model cannot do this (for example a relay on a v3 meter)."""
