"""Cloud control errors and the API token's repair issue, shared by relays and actions.

EKM's Gateway Settings and Trigger APIs answer 403 "invalid key or API token" for either
secret. While the entry's Realtime polls work, the key is good, so such a 403 means the
token: a repair issue then asks for a new one (``repairs.ApiTokenFlow``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN, LOGGER
from .pyekm import (
    EkmAuthError,
    EkmError,
    EkmForbiddenError,
    EkmInvalidParametersError,
    EkmRateLimitError,
    EkmTokenError,
    EkmTokenRequiredError,
    EkmTriggerNotFoundError,
)

if TYPE_CHECKING:
    from . import EkmConfigEntry

TOKEN_ISSUE_PREFIX: Final = "api_token_rejected"  # noqa: S105 (an issue id)


def token_issue_id(entry_id: str) -> str:
    """The repair issue of an entry whose API token EKM rejected."""
    return f"{TOKEN_ISSUE_PREFIX}_{entry_id}"


@callback
def async_raise_token_rejected(hass: HomeAssistant, entry: EkmConfigEntry) -> None:
    """Ask the owner for a new API token (the fix flow takes it)."""
    LOGGER.warning("EKM rejected the API token of %s", entry.title)
    ir.async_create_issue(
        hass,
        DOMAIN,
        token_issue_id(entry.entry_id),
        is_fixable=True,
        is_persistent=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key="api_token_rejected",
        translation_placeholders={"entry": entry.title},
        data={"entry_id": entry.entry_id},
    )


def control_error(hass: HomeAssistant, entry: EkmConfigEntry, err: EkmError) -> HomeAssistantError:
    """The translated error of a failed cloud action or command (the one mapping)."""
    title = {"entry": entry.title}
    if isinstance(err, EkmTokenRequiredError):
        return ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="token_required",
            translation_placeholders=title,
        )
    if isinstance(err, EkmTokenError):
        if entry.runtime_data.coordinator.last_update_success:
            async_raise_token_rejected(hass, entry)
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="token_rejected",
            translation_placeholders=title,
        )
    if isinstance(err, EkmForbiddenError):
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="command_forbidden",
            translation_placeholders=title,
        )
    if isinstance(err, EkmAuthError):
        return HomeAssistantError(translation_domain=DOMAIN, translation_key="invalid_auth")
    if isinstance(err, EkmTriggerNotFoundError):
        return ServiceValidationError(
            translation_domain=DOMAIN, translation_key="trigger_not_found"
        )
    if isinstance(err, EkmInvalidParametersError):
        return ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_parameters",
            translation_placeholders={"error": err.detail},
        )
    if isinstance(err, EkmRateLimitError):
        return HomeAssistantError(translation_domain=DOMAIN, translation_key="rate_limited")
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="communication_error",
        translation_placeholders={"error": str(err)},
    )
