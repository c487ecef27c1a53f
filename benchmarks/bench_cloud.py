"""Benchmark: the cloud path from Realtime fetch to Home Assistant states.

Run by ``scripts/bench`` (pytest is only the harness that gives us a real Home
Assistant; nothing here asserts a time). The simulator runs in a separate process so the
CPU figures are Home Assistant's and the integration's alone.

For 1, 10, 100 and 1,000 meters: Realtime requests per poll, wall and CPU time from the
start of a poll until every state is written, and config-entry setup time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import json
import os
from pathlib import Path
import socket
import statistics
import subprocess
import sys
import time

import aiohttp
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ekm.const import CONF_SERVER, DOMAIN

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".bench" / "cloud.json"
POLLS = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _simulator(meters: int) -> AsyncIterator[str]:
    port = _free_port()
    process = subprocess.Popen(  # noqa: ASYNC220
        [
            sys.executable,
            "-m",
            "ekmsim",
            "--port",
            str(port),
            "--meters",
            str(meters),
            "--speed",
            "120",
            "--backfill",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/_sim/state") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _requests(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_sim/requests") as response:
        data = await response.json()
    return int(data["counts"].get("readMeter", 0))


@pytest.mark.parametrize("meters", [1, 10, 100, 1000])
async def test_cloud_poll(
    hass: HomeAssistant,
    enable_custom_integrations: None,
    socket_enabled: None,
    meters: int,
) -> None:
    """Measure setup and polls for one fleet size."""
    async with _simulator(meters) as url:
        entry = MockConfigEntry(
            domain=DOMAIN,
            unique_id="1010",
            data={CONF_API_KEY: "MTAxMDoyMDIw", CONF_SERVER: url},
        )
        entry.add_to_hass(hass)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        setup_wall, setup_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        states = len(hass.states.async_entity_ids())

        coordinator = entry.runtime_data.coordinator
        walls, cpus, requests = [], [], []
        for _ in range(POLLS):
            await asyncio.sleep(1.0)  # one simulated EKM interval at --speed 120
            before = await _requests(url)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            await coordinator.async_refresh()
            await hass.async_block_till_done()
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
            requests.append(await _requests(url) - before)
        await hass.config_entries.async_unload(entry.entry_id)

    row = {
        "meters": meters,
        "entities": states,
        "realtime_requests_per_poll": statistics.median(requests),
        "poll_wall_ms": round(statistics.median(walls) * 1000, 1),
        "poll_cpu_ms": round(statistics.median(cpus) * 1000, 1),
        "setup_wall_ms": round(setup_wall * 1000, 1),
        "setup_cpu_ms": round(setup_cpu * 1000, 1),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[str(meters)] = row
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"\nBENCH cloud {json.dumps(row)}", file=sys.__stdout__, flush=True)
    os.environ.setdefault("EKM_BENCH_DONE", "1")
