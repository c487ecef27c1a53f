"""Keep secrets out of logs, exceptions and diagnostics."""

from __future__ import annotations

from collections.abc import Iterable
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = frozenset({"key", "token", "password", "api_key", "gateway_key"})
REDACTED = "**REDACTED**"


def redact_url(url: str) -> str:
    """The URL with every secret query parameter and any userinfo replaced."""
    parts = urlsplit(url)
    query = urlencode(
        [
            (name, REDACTED if name.lower() in SECRET_PARAMS else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*~",
    )
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """The text with each secret (of 4+ characters) replaced."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def mask(secret: str) -> str:
    """A recognisable but safe form of a key: its last 4 characters."""
    return f"…{secret[-4:]}" if len(secret) > 8 else "…"


_KEY_IN_URL = re.compile(r"(?i)([?&](?:key|token|password)=)[^&\s]+")


def scrub_urls(text: str) -> str:
    """Redact ``key=...`` query parameters wherever they appear in free text."""
    return _KEY_IN_URL.sub(rf"\1{REDACTED}", text)
