"""Prepare the development Home Assistant started by scripts/develop.

Idempotent: onboarding (user dev / dev), the EKM integration against the simulator,
and the Energy dashboard with the simulated meters' sensors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp

DEMO_ACCOUNT_KEY = "MTAxMDoyMDIw"
# The simulator's two Push3 gateways (ekmsim.fleet.Fleet.demo).
GATEWAY_KEYS = ["NjUyNjk0MzY6KDkkPVtXLUpQZyFmaDBrYTlJ", "NjUyNjk0Mzc6U2ltLUtleS0yIQ"]
# The simulator's API token (ekmsim.fleet.DEMO_API_TOKEN): the trigger actions need one.
DEMO_API_TOKEN = "ekmsim-api-token-7f3c9a2e5b1d4086"  # noqa: S105 - the simulator's demo token
# The Demo Push3's LAN key (ekmsim.fleet.DEMO_LAN_KEY): its readMeter API on the local network.
DEMO_LAN_KEY = "17f30fa7ee445c178b97"
BUS_METERS = "300000001234, 000000022222"
USERNAME = PASSWORD = "dev"  # noqa: S105 - the documented development login
# The simulator's demo home (ekmsim.fleet.Fleet.demo): one house with rooftop PV.
GRID_METER = "000000000099"  # the grid connection: imports at night, exports by day
SOLAR_METER = "000000015635"  # the PV production meter: its forward energy is the production
# The house's water meter on the grid meter's pulse input 1 (0.1 gal per pulse).
WATER_INPUT = {"kind": "water", "per_pulse": 0.1, "unit": "gal"}
WATER_STATISTIC = f"ekm:{GRID_METER}_pulse_1"
# Individual devices, sub-meters inside the house: (meter, name, the meter that includes it).
DEVICE_METERS: tuple[tuple[str, str, str | None], ...] = (
    ("000000010388", "Sub-panel", None),
    ("000000010389", "Water heater", "000000010388"),  # a circuit of the sub-panel
)
# What older versions of this script set up: the grid meter and these meters as devices.
OLD_DEVICE_METERS = ("000000010389", "000000010388", "000000015635", "000300000001")


def log(message: str) -> None:
    """Print a progress line."""
    print(f"[develop] {message}", file=sys.stderr, flush=True)


async def wait_for(session: aiohttp.ClientSession, url: str) -> None:
    """Wait until Home Assistant answers HTTP."""
    deadline = time.monotonic() + 300
    while True:
        try:
            async with session.get(f"{url}/api/onboarding") as response:
                if response.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("Home Assistant did not start")
        await asyncio.sleep(1)


async def token(session: aiohttp.ClientSession, url: str) -> str:
    """Onboard if needed and return an access token for dev / dev."""
    client_id = f"{url}/"
    async with session.get(f"{url}/api/onboarding") as response:
        # Once onboarding is complete Home Assistant no longer serves this view.
        done = response.status == 404
        steps = {} if done else {s["step"]: s["done"] for s in await response.json()}
    if done:
        steps = dict.fromkeys(("user", "core_config", "analytics", "integration"), True)
    if not steps.get("user"):
        log("onboarding: creating user dev / dev")
        async with session.post(
            f"{url}/api/onboarding/users",
            json={
                "client_id": client_id,
                "name": "Developer",
                "username": USERNAME,
                "password": PASSWORD,
                "language": "en",
            },
        ) as response:
            response.raise_for_status()
            code = (await response.json())["auth_code"]
    else:
        async with session.post(
            f"{url}/auth/login_flow",
            json={
                "client_id": client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": client_id,
            },
        ) as response:
            flow = await response.json()
        async with session.post(
            f"{url}/auth/login_flow/{flow['flow_id']}",
            json={"client_id": client_id, "username": USERNAME, "password": PASSWORD},
        ) as response:
            code = (await response.json())["result"]
    async with session.post(
        f"{url}/auth/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": client_id},
    ) as response:
        response.raise_for_status()
        access: str = (await response.json())["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    for step, body in (
        ("core_config", {}),
        ("analytics", {}),
        ("integration", {"client_id": client_id, "redirect_uri": client_id}),
    ):
        if not steps.get(step):
            async with session.post(
                f"{url}/api/onboarding/{step}", json=body, headers=headers
            ) as response:
                if response.status >= 400 and response.status != 403:
                    log(f"onboarding step {step}: HTTP {response.status}")
    return access


async def configure_ekm(
    session: aiohttp.ClientSession, url: str, args: argparse.Namespace, access: str
) -> None:
    """Add the EKM account, the Push3 on the LAN and the RS-485 bus, unless they are there."""
    headers = {"Authorization": f"Bearer {access}"}
    async with session.get(
        f"{url}/api/config/config_entries/entry", params={"domain": "ekm"}, headers=headers
    ) as response:
        titles = [entry["title"] for entry in await response.json()]

    async def flow(steps: list[dict[str, Any]]) -> dict[str, Any]:
        async with session.post(
            f"{url}/api/config/config_entries/flow", json={"handler": "ekm"}, headers=headers
        ) as response:
            result: dict[str, Any] = await response.json()
        for step in steps:
            async with session.post(
                f"{url}/api/config/config_entries/flow/{result['flow_id']}",
                json=step,
                headers=headers,
            ) as response:
                result = await response.json()
            if result.get("errors"):
                raise SystemExit(f"EKM config flow step failed: {result['errors']}")
        return result

    if not any(t.startswith("EKM Push") for t in titles):
        log(f"adding the EKM Push account (simulator {args.sim}, broker {args.mqtt})")
        await flow(
            [
                {"next_step_id": "cloud"},
                {
                    "api_key": DEMO_ACCOUNT_KEY,
                    "advanced": {"server": args.sim, "api_token": DEMO_API_TOKEN},
                },
                {
                    "gateway_keys": GATEWAY_KEYS,
                    "push": {"mqtt_server": args.mqtt, "mqtt_ca_file": args.ca},
                },
            ]
        )
    if not any(t.startswith("Push3 ") for t in titles):
        log(f"adding the Demo Push3 on the local network ({args.lan})")
        await flow([{"next_step_id": "lan"}, {"host": args.lan, "lan_key": DEMO_LAN_KEY}, {}])
    if not any(t.startswith("RS-485") for t in titles):
        log(f"adding the RS-485 bus {args.bus}")
        await flow(
            [
                {"next_step_id": "rs485"},
                {"port": args.bus, "addresses": BUS_METERS, "single_meter": False},
                {},
            ]
        )


async def configure_pulse_input(session: aiohttp.ClientSession, url: str, access: str) -> None:
    """The water meter on the grid meter's input 1, in the account's options (once)."""
    headers = {"Authorization": f"Bearer {access}"}
    async with session.get(
        f"{url}/api/config/config_entries/entry", params={"domain": "ekm"}, headers=headers
    ) as response:
        entries = [e for e in await response.json() if e["title"].startswith("EKM Push")]
    if not entries:
        return
    base = f"{url}/api/config/config_entries/options/flow"

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with session.post(f"{base}{path}", json=body, headers=headers) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    result = await post("", {"handler": entries[0]["entry_id"]})
    flow = f"/{result.get('flow_id')}"
    if result.get("type") != "menu" or "pulse_inputs" not in result.get("menu_options", []):
        log("pulse input not configured: the options have no pulse inputs step")
        return
    result = await post(flow, {"next_step_id": "pulse_inputs"})
    if result.get("step_id") == "pulse_inputs":
        result = await post(flow, {"meter": GRID_METER})
    if result.get("step_id") != "pulse_meter":
        log(f"pulse input not configured: {result.get('reason') or result.get('errors')}")
        return
    shown = pulse_inputs_shown(result["data_schema"])
    if shown.get("input_1") == WATER_INPUT:
        async with session.delete(f"{base}{flow}", headers=headers):
            return
    result = await post(flow, {**shown, "input_1": WATER_INPUT})
    if result.get("type") == "create_entry":
        log("pulse input 1 of the grid meter: the house's water meter (0.1 gal per pulse)")
    else:
        log(f"pulse input not configured: {result.get('errors')}")


def pulse_inputs_shown(schema: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the pulse_meter form shows for each input (kept as it is when submitted)."""
    shown: dict[str, dict[str, Any]] = {}
    for section in schema:
        fields: dict[str, Any] = {}
        for item in section.get("schema", []):
            given = item.get("default", (item.get("description") or {}).get("suggested_value"))
            if given is not None:
                fields[item["name"]] = given
        shown[section["name"]] = fields
    return shown


def energy_prefs(power: dict[str, str], flow: str | None = None) -> dict[str, Any]:
    """The demo home's energy preferences; ``power``: meter address -> power sensor.

    Energy comes from the external statistics the history import writes
    (``ekm:<address>_energy_import`` / ``_energy_export``: the whole past at once), the
    *Now* power from the meters' Power sensors: the grid meter's is signed (positive =
    import), the PV meter's is its production, each device's its draw. The water heater
    is a circuit of the sub-panel (``included_in_stat``), so it is not counted twice.
    Water: the grid meter's pulse input 1 (``ekm:<address>_pulse_1``), its flow rate
    ``flow`` for *Now*.
    """

    def rate(address: str) -> dict[str, str]:
        return {"stat_rate": power[address]} if address in power else {}

    grid: dict[str, Any] = {
        "type": "grid",
        "name": "Grid",
        "stat_energy_from": f"ekm:{GRID_METER}_energy_import",
        "stat_energy_to": f"ekm:{GRID_METER}_energy_export",
        # Home Assistant computes costs from a fixed price only for entity statistics;
        # external ones need a cost statistic of their own, which EKM does not provide.
        "cost_adjustment_day": 0,
    }
    if GRID_METER in power:
        grid["power_config"] = rate(GRID_METER)
    solar = {
        "type": "solar",
        "name": "Rooftop PV",
        "stat_energy_from": f"ekm:{SOLAR_METER}_energy_import",
        **rate(SOLAR_METER),
    }
    devices = [
        {
            "stat_consumption": f"ekm:{address}_energy_import",
            "name": name,
            **rate(address),
            **({"included_in_stat": f"ekm:{parent}_energy_import"} if parent else {}),
        }
        for address, name, parent in DEVICE_METERS
    ]
    water = {
        "type": "water",
        "stat_energy_from": WATER_STATISTIC,
        **({"stat_rate": flow} if flow else {}),
    }
    return {"energy_sources": [grid, solar, water], "device_consumption": devices}


def _statistics(prefs: dict[str, Any]) -> set[tuple[str, str]]:
    """The (kind, energy statistic) pairs a set of preferences uses (power left out)."""
    used = {
        (source.get("type", ""), source.get(key) or "")
        for source in prefs.get("energy_sources", [])
        for key in ("stat_energy_from", "stat_energy_to")
        if source.get(key)
    }
    return used | {("device", d["stat_consumption"]) for d in prefs.get("device_consumption", [])}


def _covers(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    """Whether ``current`` holds ``wanted`` item by item (Home Assistant adds defaults)."""
    return len(current) == len(wanted) and all(
        any(all(item.get(k) == v for k, v in want.items()) for item in current) for want in wanted
    )


def energy_action(current: dict[str, Any], wanted: dict[str, Any]) -> str:
    """'keep' (already the demo home), 'save', or 'leave' (somebody else's set-up)."""
    sources = current.get("energy_sources", [])
    devices = current.get("device_consumption", [])
    if _covers(sources, wanted["energy_sources"]) and _covers(
        devices, wanted["device_consumption"]
    ):
        return "keep"
    if not sources and not devices:
        return "save"
    ours = _statistics(wanted)
    # Ours, power sensors missing then, or saved before the water meter.
    if _statistics(current) in (ours, ours - {("water", WATER_STATISTIC)}):
        return "save"
    older = (
        len(sources) == 1
        and sources[0].get("type") == "grid"
        and GRID_METER in (sources[0].get("stat_energy_from") or "")
        and all(any(a in d.get("stat_consumption", "") for a in OLD_DEVICE_METERS) for d in devices)
    )
    return "save" if older else "leave"


async def configure_energy(session: aiohttp.ClientSession, url: str, access: str) -> None:
    """Set the Energy dashboard up for the simulator's demo home (see energy_prefs).

    Dashboards set up by an older version of this script (the grid meter plus every other
    meter as a device, no solar) are brought up to date; any other set-up is left alone.
    """
    async with session.ws_connect(f"{url}/api/websocket") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": access})
        await ws.receive_json()
        ids = iter(range(1, 1000))

        async def call(message: dict[str, Any]) -> Any:
            message_id = next(ids)
            await ws.send_json({"id": message_id, **message})
            while True:
                answer = await ws.receive_json()
                if answer.get("id") == message_id:
                    return answer

        for _ in range(120):  # the energy component may still be starting
            prefs = await call({"type": "energy/get_prefs"})
            if prefs.get("success") or prefs.get("error", {}).get("code") != "unknown_command":
                break
            await asyncio.sleep(1)
        current = prefs["result"] if prefs.get("success") else {}
        meters = (GRID_METER, SOLAR_METER, *(address for address, _, _ in DEVICE_METERS))
        power: dict[str, str] = {}
        flow: str | None = None
        for _ in range(60):
            registry = await call({"type": "config/entity_registry/list"})
            flow = next(
                (
                    e["entity_id"]
                    for e in registry["result"]
                    if e["platform"] == "ekm"
                    and e["unique_id"].endswith(f"_{GRID_METER}_pulse_water_flow_1")
                ),
                None,
            )
            power = {
                address: e["entity_id"]
                for e in registry["result"]
                if e["platform"] == "ekm"
                for address in meters
                if e["unique_id"].endswith(f"_{address}_power")
            }
            if len(power) == len(meters) and flow:
                break
            await asyncio.sleep(1)
        wanted = energy_prefs(power, flow)
        action = energy_action(current, wanted)
        if action == "keep":
            return
        if action == "leave":
            log("Energy dashboard left as it is (not set up by this script)")
            return
        answer = await call({"type": "energy/save_prefs", **wanted})
        if answer.get("success"):
            log("Energy dashboard configured: the demo home (grid, PV, two sub-meters, water)")
        else:
            log(f"Energy dashboard not configured: {answer.get('error')}")


async def main() -> None:
    """Run the bootstrap."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ha", required=True)
    parser.add_argument("--sim", required=True)
    parser.add_argument("--mqtt", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--bus", required=True)
    parser.add_argument("--lan", required=True, help="host:port of the Demo Push3's LAN API")
    args = parser.parse_args()
    async with aiohttp.ClientSession() as session:
        await wait_for(session, args.ha)
        access = await token(session, args.ha)
        await configure_ekm(session, args.ha, args, access)
        await configure_pulse_input(session, args.ha, access)
        await configure_energy(session, args.ha, access)


if __name__ == "__main__":
    asyncio.run(main())
