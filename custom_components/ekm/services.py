"""Service actions of the EKM Metering integration (registered once, in async_setup)."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import service
import probatio as vol

from .const import DOMAIN

ATTR_STATE = "state"
ATTR_DURATION = "duration"
SERVICE_SET_RELAY = "set_relay"


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""
    service.async_register_platform_entity_service(
        hass,
        DOMAIN,
        SERVICE_SET_RELAY,
        entity_domain=Platform.SWITCH,
        schema={
            vol.Required(ATTR_STATE): vol.In(["on", "off"]),
            vol.Optional(ATTR_DURATION, default=0): vol.All(
                vol.Coerce(int), vol.Range(min=0, max=9999)
            ),
        },
        func="async_handle_set_relay",
    )
