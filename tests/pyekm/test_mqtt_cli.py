"""``ekm push`` in-process against the simulated broker (the CLI runs in a worker thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import json

import pytest

from custom_components.ekm.pyekm.cli import main
from ekmsim.fleet import DEMO_GATEWAY_KEY, DEMO_METER, Fleet
from ekmsim.mqtt import MqttSimulator


@pytest.fixture
async def sim(fleet: Fleet) -> AsyncIterator[MqttSimulator]:
    broker = MqttSimulator(fleet)
    await broker.start(port=0)
    try:
        yield broker
    finally:
        await broker.stop()


async def wait_until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not predicate():
            await asyncio.sleep(0.005)


def subscribed(sim: MqttSimulator, count: int) -> bool:
    sessions = sim.broker._sessions  # the simulator's own state, read-only
    return sum(len(s.subscriptions) for s in sessions) >= count


async def run_cli(argv: list[str]) -> asyncio.Task[int]:
    return asyncio.create_task(asyncio.to_thread(main, argv))


async def test_push_prints_n_readings(
    fleet: Fleet, sim: MqttSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = await run_cli(
        [
            "push",
            "--gateway-key",
            DEMO_GATEWAY_KEY,
            "--server",
            sim.url,
            "--ca",
            str(sim.ca_file),
            "--count",
            "3",
        ]
    )
    await wait_until(lambda: subscribed(sim, 1))
    for _ in range(2):  # two messages of two meters each; the CLI stops after three lines
        fleet.advance(fleet.interval_s)
        await sim.broker.drain()
    async with asyncio.timeout(30):
        assert await cli == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    assert {line["address"] for line in lines} == set(fleet.gateways["4016fa0500cd"].meters)
    assert all(line["source"] == "mqtt" for line in lines)
    assert lines[0]["values"]["kWh_Tot"] > 0
    assert DEMO_GATEWAY_KEY not in out + err
    await wait_until(lambda: sim.broker.session_count == 0)


async def test_push_summary_lines(sim: MqttSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    cli = await run_cli(
        [
            "push",
            "--gateway-key",
            DEMO_GATEWAY_KEY,
            "--server",
            sim.url,
            "--ca",
            str(sim.ca_file),
            "--count",
            "1",
            "--summary",
        ]
    )
    await wait_until(lambda: subscribed(sim, 2))
    summary = {
        "Start_Time_Stamp_UTC_ms": 1000,
        "End_Time_Stamp_UTC_ms": 901000,
        "kWh_Tot_Diff": "0.25",
    }
    await sim.publish_raw(
        DEMO_GATEWAY_KEY, json.dumps({f"meter_{DEMO_METER}": summary}), topic="summary"
    )
    async with asyncio.timeout(30):
        assert await cli == 0
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line == {
        "summary": True,
        "address": DEMO_METER,
        "start_ms": 1000,
        "end_ms": 901000,
        "source": "mqtt",
        "values": {**summary, "kWh_Tot_Diff": 0.25},
    }


async def test_push_rejected_key(sim: MqttSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    sim.reject_key(DEMO_GATEWAY_KEY)
    code = await asyncio.to_thread(
        main,
        ["push", "--gateway-key", DEMO_GATEWAY_KEY, "--server", sim.url, "--ca", str(sim.ca_file)],
    )
    assert code == 1
    out, err = capsys.readouterr()
    assert out == ""
    error = json.loads(err)
    assert error["error"] == "EkmGatewayKeyError"
    assert "#1" in error["message"]
    assert DEMO_GATEWAY_KEY not in err


async def test_push_untrusted_broker(
    sim: MqttSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(
        main, ["push", "--gateway-key", DEMO_GATEWAY_KEY, "--server", sim.url]
    )
    assert code == 1
    assert json.loads(capsys.readouterr().err)["error"] == "EkmConnectionError"


def test_push_help_has_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["push", "--help"])
    out = capsys.readouterr().out
    assert "--gateway-key" in out
    assert "mqtts://mqtts.ekmpush.com:8883" in out
