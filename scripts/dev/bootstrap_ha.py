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
BUS_METERS = "300000001234, 000000022222"
USERNAME = PASSWORD = "dev"  # noqa: S105 - the documented development login
GRID_METER = "000000000099"  # the solar home: imports at night, exports by day
DEVICE_METERS = ("000000010389", "000000010388", "000000015635", "000300000001")


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
    """Add the EKM account and the RS-485 bus, as a user would, unless they are there."""
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
    if not any(t.startswith("RS-485") for t in titles):
        log(f"adding the RS-485 bus {args.bus}")
        await flow(
            [
                {"next_step_id": "rs485"},
                {"port": args.bus, "addresses": BUS_METERS, "single_meter": False},
                {},
            ]
        )


async def configure_energy(session: aiohttp.ClientSession, url: str, access: str) -> None:
    """Point the Energy dashboard at the imported EKM statistics (history from day one).

    Energy comes from the external statistics the history import writes
    (``ekm:<address>_energy_import`` / ``_energy_export``: months of history at once);
    live power from the grid meter's power sensor. Dashboards set up by an older
    bootstrap (entity statistics) are moved to the external statistics.
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
        sources = prefs["result"].get("energy_sources", []) if prefs.get("success") else []
        if any(":" in (s.get("stat_energy_from") or "") for s in sources):
            return  # already on the external statistics
        entities: dict[str, str] = {}
        for _ in range(60):
            registry = await call({"type": "config/entity_registry/list"})
            entities = {
                e["unique_id"]: e["entity_id"] for e in registry["result"] if e["platform"] == "ekm"
            }
            if any(uid.endswith(f"{GRID_METER}_power") for uid in entities):
                break
            await asyncio.sleep(1)

        def entity(address: str, key: str) -> str | None:
            return next(
                (e for uid, e in entities.items() if uid.endswith(f"_{address}_{key}")), None
            )

        grid = {
            "type": "grid",
            "stat_energy_from": f"ekm:{GRID_METER}_energy_import",
            "stat_energy_to": f"ekm:{GRID_METER}_energy_export",
            "stat_rate": entity(GRID_METER, "power"),  # signed: positive = import
            # Home Assistant computes costs from a fixed price only for entity statistics;
            # external ones need a cost statistic of their own, which EKM does not provide.
            "cost_adjustment_day": 0,
        }
        devices = [{"stat_consumption": f"ekm:{a}_energy_import"} for a in DEVICE_METERS]
        answer = await call(
            {"type": "energy/save_prefs", "energy_sources": [grid], "device_consumption": devices}
        )
        if answer.get("success"):
            log("Energy dashboard configured (EKM history statistics)")
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
    args = parser.parse_args()
    async with aiohttp.ClientSession() as session:
        await wait_for(session, args.ha)
        access = await token(session, args.ha)
        await configure_ekm(session, args.ha, args, access)
        await configure_energy(session, args.ha, access)


if __name__ == "__main__":
    asyncio.run(main())
