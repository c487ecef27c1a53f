"""Requests to EKM's JSON APIs, shared by every pyekm cloud client.

The request, JSON decoding and error mapping of the Account, Realtime and Summary clients
(GET, ``get_json``) and of the Settings and Trigger APIs (any method, a JSON body, a bearer
token: ``request_json``) live here once. The key travels as the ``key=`` query parameter,
passed through ``params=`` and never formatted into a URL string that could reach a log;
the token travels only in the Authorization header. Errors carry neither the URL, the key
nor the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
import json
import re
from typing import Any, Final, NamedTuple

import aiohttp

from .catalog import to_number
from .errors import (
    EkmApiError,
    EkmAuthError,
    EkmConnectionError,
    EkmForbiddenError,
    EkmInvalidParametersError,
    EkmRateLimitError,
    EkmRequestError,
    EkmResponseError,
    EkmServerError,
    EkmTimeoutError,
    EkmTokenError,
    EkmTokenRequiredError,
)
from .redact import redact_text, scrub_urls

DEFAULT_TIMEOUT: Final = 20.0

_AUTH_WORDS: Final = ("invalid key", "invalid api key", "unauthorized", "not authorized")
# EKM's answer to bad arguments: HTTP 200, plain text starting with "Error" (§3.2, §13).
_ERROR_TEXT: Final = b"error"
_DETAIL_CHARS: Final = 200
_URL: Final = re.compile(r"\S+://\S*|[?&]\S*=\S*")


class Answer(NamedTuple):
    """One HTTP answer: status, raw body, decoded JSON (or ``NOT_JSON``), content type."""

    status: int
    body: bytes
    data: Any
    content_type: str


class EkmHttp:
    """One key's requests to EKM: JSON decoded, every failure a typed EkmError."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        peer: str = "the EKM server",
    ) -> None:
        """``peer`` names the other side in error messages (``the Push3 at 10.0.0.5``)."""
        self._session = session
        self._key = key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._peer = peer
        self.requests = 0  # Number of HTTP requests made (benchmarks, diagnostics).

    async def get_json(self, url: str, params: Mapping[str, str]) -> Any:
        """GET ``url`` with the key and ``params``; the decoded JSON body.

        Raises EkmTimeoutError / EkmConnectionError (network), EkmRateLimitError (429),
        EkmAuthError / EkmForbiddenError (401/403 or EKM's invalid-key bodies), EkmApiError
        (EKM status codes 1000-1399), EkmServerError (other HTTP errors), EkmRequestError
        (a plain-text "Error..." body) and EkmResponseError (anything else not JSON).
        """
        status, body, data, _ = await self.exchange("GET", url, params)
        if status in (401, 403):
            raise (EkmAuthError if status == 401 else EkmForbiddenError)(
                "The EKM server rejected the key"
            )
        if isinstance(data, Mapping):
            raise_for_body_error(data, http_error=status >= 400)
        if status >= 400:
            raise EkmServerError(status)
        if data is NOT_JSON:
            if body.lstrip()[: len(_ERROR_TEXT)].lower() == _ERROR_TEXT:
                detail = self._detail(body.decode("utf-8", "replace"))
                raise EkmRequestError(f"EKM rejected the request's arguments: {detail}")
            raise EkmResponseError("The EKM server answered with something other than JSON")
        return data

    async def request_json(
        self,
        method: str,
        url: str,
        params: Mapping[str, str],
        *,
        json_body: Any = None,
        token: str | None = None,
    ) -> Any:
        """``method`` ``url`` with the key and ``params``; the decoded JSON body of a 2xx.

        For the Settings and Trigger APIs (ekm-cloud-api.md §6, §7): ``json_body`` goes as
        JSON, and ``Authorization: Bearer <token>`` is sent only when a token is given.
        A 2xx JSON answer is returned as it is (no envelope check: a trigger may hold any
        field); an empty answer to a DELETE is None.

        Raises EkmTimeoutError / EkmConnectionError (network), EkmRateLimitError (429),
        EkmTokenError (401/403 to a request with a token), EkmTokenRequiredError (401
        without one), EkmForbiddenError (403 without one), EkmInvalidParametersError (400,
        quoting EKM's ``error`` text without key, token or URL), EkmServerError (any other
        status outside 2xx, 404 included) and EkmResponseError (a 2xx that is not JSON).
        """
        status, body, data, _ = await self.exchange(
            method, url, params, json_body=json_body, token=token
        )
        if status in (401, 403):
            if token:
                raise EkmTokenError("The EKM server rejected the key or API token")
            if status == 401:
                raise EkmTokenRequiredError("This EKM server requires an API token")
            raise EkmForbiddenError("The EKM server rejected the key")
        if status == 400:
            error = data.get("error") if isinstance(data, Mapping) else None
            if not isinstance(error, str):
                error = body.decode("utf-8", "replace") if data is NOT_JSON else ""
            raise EkmInvalidParametersError(self._detail(error, token))
        if not 200 <= status < 300:
            raise EkmServerError(status)
        if data is NOT_JSON:
            if method.upper() == "DELETE" and not body.strip():
                return None
            raise EkmResponseError("The EKM server answered with something other than JSON")
        return data

    async def exchange(
        self,
        method: str,
        url: str,
        params: Mapping[str, str],
        *,
        json_body: Any = None,
        token: str | None = None,
    ) -> Answer:
        """Send one request with the key; its answer, the body decoded (or NOT_JSON).

        Network failures and 429 (common to every EKM API) are raised here.
        """
        self.requests += 1
        query = {"key": self._key, **params}
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            async with self._session.request(
                method, url, params=query, json=json_body, headers=headers, timeout=self._timeout
            ) as response:
                body = await response.read()
                status = response.status
                retry = response.headers.get("Retry-After")
                content_type = response.headers.get("Content-Type", "").lower()
        except TimeoutError:
            raise EkmTimeoutError(
                f"{self._peer[:1].upper()}{self._peer[1:]} did not answer in time"
            ) from None
        except aiohttp.ClientError as err:
            raise EkmConnectionError(f"Cannot reach {self._peer} ({type(err).__name__})") from None
        if status == 429:
            raise EkmRateLimitError(retry_after(retry))
        return Answer(status, body, _decode(body), content_type)

    def _detail(self, text: str, token: str | None = None) -> str:
        """The first line of EKM's text, without the key, the token, URLs or query strings."""
        lines = redact_text(text, [self._key, token or ""]).strip().splitlines()
        line = _URL.sub("…", scrub_urls(lines[0] if lines else ""))
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


NOT_JSON: Final = object()


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return NOT_JSON


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
