"""Config and options flow helpers: key and bus validation, schemas, selectors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
import hashlib
import re
from typing import Any

from homeassistant.const import CONF_API_KEY, CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import section
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import probatio as vol
import serialx
from yarl import URL

from .const import (
    CONF_ADDRESSES,
    CONF_ADVANCED,
    CONF_API_TOKEN,
    CONF_LAN_KEY,
    CONF_MQTT_CA_FILE,
    CONF_MQTT_SERVER,
    CONF_SERVER,
    CONF_SINGLE_METER,
    LOGGER,
    WILDCARD_ADDRESS,
    KeyType,
)
from .push import async_check_gateway_key, async_create_ssl_context
from .pyekm import (
    DEFAULT_SERVER,
    Account,
    EkmAuthError,
    EkmCloudClient,
    EkmConnectionError,
    EkmError,
    EkmNoResponseError,
    EkmRateLimitError,
    EkmTokenError,
    normalize_address,
)
from .pyekm.catalog import model_name
from .pyekm.control import EkmControlClient
from .pyekm.lan import EkmLanClient
from .pyekm.mqtt import DEFAULT_MQTT_SERVER, parse_server
from .pyekm.redact import mask
from .pyekm.rs485.client import EkmBus

CONF_PUSH = "push"

KEY_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
KEYS_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD, multiple=True))
URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))


def account_unique_id(key: str) -> str:
    """A stable id for the account behind a key.

    [INF] EKM keys look like unpadded base64 of ``<account id>:<secret>``
    (``MTAxMDoyMDIw`` is ``1010:2020``), so the id part survives a new key for the same
    account (reauth). A key that does not decode that way is identified by its hash.
    """
    bare = key.rstrip("=")
    try:
        decoded = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True).decode("ascii")
    except binascii.Error, UnicodeDecodeError, ValueError:
        decoded = ""
    account_id, sep, secret = decoded.partition(":")
    if sep and account_id.isdigit() and secret:
        return account_id
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def normalize_server(server: str | None) -> str | None:
    """The server base URL, or None if it is not an http(s) URL."""
    text = (server or DEFAULT_SERVER).strip().rstrip("/")
    try:
        url = URL(text)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return text


async def async_validate(
    hass: HomeAssistant, key: str, server: str
) -> tuple[Account | None, dict[str, str]]:
    """Check the key against the Account API; returns the account or form errors."""
    client = EkmCloudClient(async_get_clientsession(hass), key, server=server)
    try:
        account = await client.async_get_account()
    except EkmAuthError:
        return None, {"base": "invalid_auth"}
    except EkmRateLimitError:
        return None, {"base": "rate_limited"}
    except EkmConnectionError:
        return None, {"base": "cannot_connect"}
    except EkmError as err:
        LOGGER.debug("Unexpected answer while validating an EKM key: %s", err)
        return None, {"base": "invalid_response"}
    if not account.devices:
        return None, {"base": "no_devices"}
    return account, {}


async def async_validate_token(
    hass: HomeAssistant, key: str, server: str, token: str, gateways: set[str]
) -> str | None:
    """Check an API token with a trigger lookup; None if EKM accepts it, else a form error."""
    client = EkmControlClient(async_get_clientsession(hass), key, token=token, server=server)
    try:
        await client.check_token(min(gateways) if gateways else None)
    except EkmTokenError:
        return "invalid_token"
    except EkmRateLimitError:
        return "rate_limited"
    except EkmConnectionError:
        return "cannot_connect"
    except EkmError as err:
        LOGGER.debug("Unexpected answer while checking an EKM API token: %s", err)
        return "invalid_response"
    return None


def entry_title(key_type: KeyType, account: Account, unique_id: str) -> str:
    """What the entry covers: the account, one gateway (by name) or one meter."""
    if key_type is KeyType.GATEWAY and account.gateways:
        gateway = account.gateways[0]
        return f"EKM Push gateway {gateway.name or gateway.mac}"
    if key_type is KeyType.METER and account.devices:
        device = account.devices[0]
        return f"EKM Push meter {device.name or device.address}"
    return f"EKM Push account {unique_id}" if len(unique_id) < 16 else "EKM Push account"


def advanced_token(user_input: dict[str, Any]) -> str:
    """The API token typed in a form's Advanced section ("" when left empty)."""
    return str(user_input.get(CONF_ADVANCED, {}).get(CONF_API_TOKEN) or "").strip()


async def async_validate_gateway_keys(
    hass: HomeAssistant,
    keys: list[str],
    *,
    rest_server: str,
    account_gateways: set[str],
    push: dict[str, Any],
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Check gateway keys: the Account API names their gateway, the broker accepts them.

    Returns ({key: gateway MAC}, form errors, error placeholders).
    """
    server = (push.get(CONF_MQTT_SERVER) or DEFAULT_MQTT_SERVER).strip()
    try:
        parse_server(server)
    except ValueError:
        return {}, {CONF_PUSH: "invalid_mqtt_server"}, {}
    try:
        ssl_context = await async_create_ssl_context(hass, push.get(CONF_MQTT_CA_FILE))
    except (OSError, ValueError) as err:
        LOGGER.debug("Cannot load the broker CA file: %s", err)
        return {}, {CONF_PUSH: "invalid_ca_file"}, {}
    session = async_get_clientsession(hass)
    result: dict[str, str] = {}
    for key in dict.fromkeys(k.strip() for k in keys if k.strip()):
        placeholders = {"key": mask(key)}
        try:
            account = await EkmCloudClient(session, key, server=rest_server).async_get_account()
        except EkmAuthError:
            return {}, {"base": "invalid_gateway_key"}, placeholders
        except EkmError:
            return {}, {"base": "cannot_connect"}, placeholders
        mac = next((gw.mac for gw in account.gateways if gw.mac in account_gateways), None)
        if account.key_type != "gateway" or mac is None:
            return {}, {"base": "gateway_not_on_account"}, placeholders
        try:
            await async_check_gateway_key(key, server=server, ssl_context=ssl_context)
        except EkmAuthError:
            return {}, {"base": "invalid_gateway_key"}, placeholders
        except EkmError, TimeoutError:
            return {}, {"base": "mqtt_cannot_connect"}, placeholders
        result[key] = mac
    return result, {}, {}


def push_section(defaults: dict[str, Any] | None = None) -> Any:
    """The collapsed MQTT broker section (broker URL and an extra CA file)."""
    defaults = defaults or {}
    return section(
        vol.Schema(
            {
                vol.Optional(
                    CONF_MQTT_SERVER,
                    default=defaults.get(CONF_MQTT_SERVER) or DEFAULT_MQTT_SERVER,
                ): TextSelector(),
                vol.Optional(
                    CONF_MQTT_CA_FILE,
                    description={"suggested_value": defaults.get(CONF_MQTT_CA_FILE)},
                ): TextSelector(),
            }
        ),
        {"collapsed": True},
    )


def push_options(push: dict[str, Any]) -> dict[str, Any]:
    """The broker settings to store (only what differs from EKM's broker)."""
    options: dict[str, Any] = {}
    server = (push.get(CONF_MQTT_SERVER) or "").strip()
    if server and server != DEFAULT_MQTT_SERVER:
        options[CONF_MQTT_SERVER] = server
    if ca_file := (push.get(CONF_MQTT_CA_FILE) or "").strip():
        options[CONF_MQTT_CA_FILE] = ca_file
    return options


async def async_bus_schema(hass: HomeAssistant) -> vol.Schema:
    """Port (the host's serial ports offered, or a URL typed in) and meter addresses."""
    ports = await serialx.async_list_serial_ports()
    options = [
        SelectOptionDict(
            value=p.device,
            label=" - ".join(x for x in (p.device, p.manufacturer, p.product) if x),
        )
        for p in ports
    ]
    return vol.Schema(
        {
            vol.Required(CONF_PORT): SelectSelector(
                SelectSelectorConfig(
                    options=options, custom_value=True, mode=SelectSelectorMode.DROPDOWN
                )
            ),
            vol.Optional(CONF_ADDRESSES, default=""): TextSelector(),
            vol.Optional(CONF_SINGLE_METER, default=False): BooleanSelector(),
        }
    )


async def async_probe_bus(
    port: str, user_input: dict[str, Any], bus: EkmBus | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, str]]:
    """Read every meter once; returns ({address: {protocol[, poll]}}, errors, placeholders).

    ``bus``: the entry's own bus when reconfiguring the same port (it holds the port).
    """
    single = bool(user_input.get(CONF_SINGLE_METER))
    try:
        addresses = parse_addresses(user_input.get(CONF_ADDRESSES, ""))
    except ValueError as err:
        return {}, {CONF_ADDRESSES: "invalid_address"}, {"meter": str(err)}
    if single:
        addresses = [WILDCARD_ADDRESS]
    elif not addresses:
        return {}, {CONF_ADDRESSES: "no_addresses"}, {}
    meters: dict[str, dict[str, str]] = {}
    owned = bus is None
    try:
        if bus is None:
            bus = EkmBus(port, retries=1)
        for address in addresses:
            try:
                reading = await bus.read(address)
            except EkmNoResponseError:
                return {}, {"base": "no_response"}, {"meter": address}
            meter = {"protocol": "v3" if reading.protocol == "v3" else "v4"}
            if single:
                meter["poll"] = WILDCARD_ADDRESS
            meters[reading.address] = meter
    except EkmConnectionError as err:
        LOGGER.debug("Cannot open %s: %s", port, err)
        return {}, {"base": "cannot_open_port"}, {}
    except EkmError as err:
        LOGGER.debug("Bad answer on %s: %s", port, err)
        return {}, {"base": "bad_response"}, {"meter": address}
    finally:
        if owned and bus is not None:
            await bus.close()
    return meters, {}, {}


async def async_probe_lan(
    hass: HomeAssistant, host: str, key: str, known: Iterable[str] | None = None
) -> tuple[str, dict[str, str], dict[str, str]]:
    """Read a Push3 once on the LAN: (its host, {address: model}, form errors).

    ``known``: the meters of an existing entry; a gateway serving none of them is another.
    """
    try:
        client = EkmLanClient(async_get_clientsession(hass), host, key)
    except ValueError:
        return host, {}, {"host": "invalid_host"}
    try:
        latest = await client.async_read_latest()
    except EkmAuthError:
        return client.host, {}, {CONF_LAN_KEY: "invalid_lan_key"}
    except EkmConnectionError:
        return client.host, {}, {"base": "lan_cannot_connect"}
    except EkmError as err:
        LOGGER.debug("Unexpected answer from the Push3 at %s: %s", client.host, err)
        return client.host, {}, {"base": "lan_invalid_response"}
    if not latest:
        return client.host, {}, {"base": "no_devices"}
    if known is not None and not latest.keys() & set(known):
        return client.host, {}, {"base": "lan_other_gateway"}
    models = {
        address: model_name(reading.text("Model"), reading.protocol)
        for address, reading in sorted(latest.items())
    }
    return client.host, models, {}


def lan_schema(*, key_required: bool = True) -> vol.Schema:
    """Host and LAN key of a Push3 (the key optional when reconfiguring: kept)."""
    key = vol.Required(CONF_LAN_KEY) if key_required else vol.Optional(CONF_LAN_KEY)
    return vol.Schema({vol.Required(CONF_HOST): TextSelector(), key: KEY_SELECTOR})


def parse_addresses(text: str) -> list[str]:
    """12-digit addresses from a comma/space separated list (ValueError names a bad one)."""
    result: list[str] = []
    for part in re.split(r"[\s,;~]+", text.strip()):
        if not part:
            continue
        try:
            result.append(normalize_address(part))
        except ValueError:
            raise ValueError(part) from None
    return list(dict.fromkeys(result))


def box(low: int, high: int, unit: str = "s") -> NumberSelector:
    """A whole-number field."""
    return NumberSelector(
        NumberSelectorConfig(
            min=low, max=high, step=1, unit_of_measurement=unit, mode=NumberSelectorMode.BOX
        )
    )


def meter_select(addresses: list[str], names: Mapping[str, str] | None = None) -> SelectSelector:
    """A multi-select of meter addresses, each with its name in EKM's account if it has one."""
    names = names or {}
    return SelectSelector(
        SelectSelectorConfig(
            options=[
                SelectOptionDict(value=a, label=f"{a} ({names[a]})" if names.get(a) else a)
                for a in addresses
            ],
            multiple=True,
            mode=SelectSelectorMode.LIST,
        )
    )


def key_and_server(user_input: dict[str, Any], current_key: str = "") -> tuple[str, str | None]:
    """The key (the current one when left empty) and the normalized server, or None."""
    key = (user_input.get(CONF_API_KEY) or "").strip() or current_key
    return key, normalize_server(user_input.get(CONF_ADVANCED, {}).get(CONF_SERVER))


def key_schema(*, key_required: bool = True) -> vol.Schema:
    """The account key form (the key optional on reconfigure: empty keeps it)."""
    key_marker = vol.Required if key_required else vol.Optional
    return vol.Schema(
        {
            key_marker(CONF_API_KEY): KEY_SELECTOR,
            vol.Required(CONF_ADVANCED): section(
                vol.Schema(
                    {
                        vol.Optional(CONF_SERVER, default=DEFAULT_SERVER): URL_SELECTOR,
                        vol.Optional(CONF_API_TOKEN): KEY_SELECTOR,
                    }
                ),
                {"collapsed": True},
            ),
        }
    )
