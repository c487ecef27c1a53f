"""GET requests to EKM's JSON APIs, shared by every pyekm cloud client.

The request, JSON decoding and error mapping of the Account, Realtime and Summary clients
live here once. The key travels as the ``key=`` query parameter, passed through
``params=`` and never formatted into a URL string that could reach a log; errors carry
neither the URL nor the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
import json
import re
from typing import Any, Final

import aiohttp

from .catalog import to_number
from .errors import (
    EkmApiError,
    EkmAuthError,
    EkmConnectionError,
    EkmForbiddenError,
    EkmRateLimitError,
    EkmRequestError,
    EkmResponseError,
    EkmServerError,
    EkmTimeoutError,
)
from .redact import redact_text, scrub_urls

DEFAULT_TIMEOUT: Final = 20.0

_AUTH_WORDS: Final = ("invalid key", "invalid api key", "unauthorized", "not authorized")
# EKM's answer to bad arguments: HTTP 200, plain text starting with "Error" (§3.2, §13).
_ERROR_TEXT: Final = b"error"
_DETAIL_CHARS: Final = 200
_URL: Final = re.compile(r"\S+://\S*|[?&]\S*=\S*")


class EkmHttp:
    """One key's GET requests to EKM: JSON decoded, every failure a typed EkmError."""

    def __init__(
        self, session: aiohttp.ClientSession, key: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._session = session
        self._key = key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.requests = 0  # Number of HTTP requests made (benchmarks, diagnostics).

    async def get_json(self, url: str, params: Mapping[str, str]) -> Any:
        """GET ``url`` with the key and ``params``; the decoded JSON body.

        Raises EkmTimeoutError / EkmConnectionError (network), EkmRateLimitError (429),
        EkmAuthError / EkmForbiddenError (401/403 or EKM's invalid-key bodies), EkmApiError
        (EKM status codes 1000-1399), EkmServerError (other HTTP errors), EkmRequestError
        (a plain-text "Error..." body) and EkmResponseError (anything else not JSON).
        """
        self.requests += 1
        query = {"key": self._key, **params}
        try:
            async with self._session.get(url, params=query, timeout=self._timeout) as response:
                body = await response.read()
                status = response.status
                headers = response.headers
        except TimeoutError:
            raise EkmTimeoutError("The EKM server did not answer in time") from None
        except aiohttp.ClientError as err:
            raise EkmConnectionError(
                f"Cannot reach the EKM server ({type(err).__name__})"
            ) from None
        data = _decode(body)
        if status == 429:
            raise EkmRateLimitError(retry_after(headers.get("Retry-After")))
        if status in (401, 403):
            raise (EkmAuthError if status == 401 else EkmForbiddenError)(
                "The EKM server rejected the key"
            )
        if isinstance(data, Mapping):
            raise_for_body_error(data, http_error=status >= 400)
        if status >= 400:
            raise EkmServerError(status)
        if data is _NOT_JSON:
            if body.lstrip()[: len(_ERROR_TEXT)].lower() == _ERROR_TEXT:
                raise EkmRequestError(f"EKM rejected the request's arguments: {self._detail(body)}")
            raise EkmResponseError("The EKM server answered with something other than JSON")
        return data

    def _detail(self, body: bytes) -> str:
        """The first line of an "Error" body, without the key, URLs or query strings."""
        line = body.decode("utf-8", "replace").strip().splitlines()[0]
        line = _URL.sub("…", scrub_urls(redact_text(line, [self._key])))
        line = "".join(c if c.isprintable() else " " for c in line).strip()
        return line if len(line) <= _DETAIL_CHARS else line[: _DETAIL_CHARS - 1] + "…"


class EkmHttpClient:
    """Base of pyekm's cloud clients: their EkmHttp and its request count."""

    def __init__(self, session: aiohttp.ClientSession, key: str, *, timeout: float) -> None:
        self._http = EkmHttp(session, key, timeout=timeout)

    @property
    def requests(self) -> int:
        """Number of HTTP requests made (benchmarks, diagnostics)."""
        return self._http.requests


def raise_for_body_error(data: Mapping[str, Any], *, http_error: bool = False) -> None:
    """Raise for EKM's error envelopes (shape unknown, so several are accepted).

    With ``http_error`` (an HTTP 4xx/5xx answer) a generic ``error`` body is left to the
    caller, which raises by the HTTP status.
    """
    code = None
    for name in ("status_code", "code", "status", "error_code"):
        number = to_number(data.get(name))
        if number is not None and 1000 <= number <= 1399:
            code = int(number)
            break
    message = " ".join(
        str(data[name]) for name in ("error", "message") if isinstance(data.get(name), str)
    ).lower()
    if code is None:
        number = to_number(data.get("status_code"))
        if number in (401, 403) or any(word in message for word in _AUTH_WORDS):
            raise EkmAuthError("The EKM server rejected the key")
        if "error" in data and "readMeter" not in data and not http_error:
            raise EkmResponseError("The EKM server answered with an error")
        return
    raise EkmApiError(code)


_NOT_JSON: Final = object()


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def retry_after(header: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP-date), None if unusable."""
    if not header:
        return None
    number = to_number(header)
    if number is not None:
        return max(0.0, number)
    try:
        when = parsedate_to_datetime(header)
    except TypeError, ValueError:
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone information
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


__all__ = [
    "DEFAULT_TIMEOUT",
    "EkmHttp",
    "EkmHttpClient",
    "raise_for_body_error",
    "retry_after",
]
