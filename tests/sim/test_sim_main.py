"""``python -m ekmsim``: options, and a real run stopped with SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path
import re
import signal
import sys

import aiohttp
import pytest

from ekmsim import __main__ as sim_main
from ekmsim.fleet import DEMO_ACCOUNT_KEY, DEMO_API_TOKEN, DEMO_GATEWAY_KEY, DEMO_METER_KEY

ROOT = Path(__file__).resolve().parents[2]


def test_options_and_fleets(capsys: pytest.CaptureFixture[str]) -> None:
    args = sim_main.build_parser().parse_args([])
    assert (args.host, args.port, args.interval, args.meters, args.speed) == (
        "127.0.0.1", 8080, 60, 0, 1.0,
    )  # fmt: skip
    demo = sim_main.build_fleet(args)
    assert demo.account_key == DEMO_ACCOUNT_KEY
    assert len(demo.meters) == 5

    assert demo.history_len == 1000
    argv = ["--meters", "40", "--interval", "5", "--seed", "2", "--history", "10"]
    generated = sim_main.build_fleet(sim_main.build_parser().parse_args(argv))
    assert len(generated.meters) == 40
    assert generated.interval_s == 5
    assert generated.history_len == 10
    year = sim_main.build_fleet(sim_main.build_parser().parse_args(["--history-days", "365"]))
    now = year.clock.now()
    assert all(abs(m.first_report - (now - 365 * 86400)) < 120 for m in year.meters.values())  # type: ignore[operator]
    assert all(m.first_report < now - 365 * 86400 for m in demo.meters.values())  # type: ignore[operator]
    assert sim_main.SERVICES[0] is sim_main.CLOUD

    sim_main.describe(demo)
    out = capsys.readouterr().out
    assert f"account key: {DEMO_ACCOUNT_KEY}" in out
    assert DEMO_GATEWAY_KEY in out
    assert f"API token (READ/WRITE): {DEMO_API_TOKEN}" in out
    assert "meters without a gateway: 000300000001" in out
    assert f"meter 000000010389 key: {DEMO_METER_KEY}  (this meter only)" in out


async def test_run_and_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ekmsim", "--port", "0", "--interval", "1", "--backfill", "3",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines: list[str] = []
        while not lines or lines[-1] != "ready (Ctrl-C to stop)":
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, "simulator exited early"
            lines.append(line.decode().rstrip())
        match = re.search(r"cloud: (http://127\.0\.0\.1:\d+)", "\n".join(lines))
        assert match is not None
        url = match.group(1)
        assert any(line.startswith(f"control: {url}/sendCommand ") for line in lines)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{url}/readMeter", params={"key": DEMO_ACCOUNT_KEY, "meters": "10389", "cnt": "5"}
            ) as response,
        ):
            body = await response.json()
        reads = body["readMeter"]["ReadSet"][0]["ReadData"]
        assert len(reads) >= 3
        summary = re.search(r"summary: (http://\S+/summary) ", "\n".join(lines))
        assert summary is not None
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                summary.group(1),
                params={"key": DEMO_ACCOUNT_KEY, "meters": "10389", "report": "range",
                        "start_date": "202301010000", "end_date": "210001010000"},
            ) as response,
        ):  # fmt: skip
            [row] = await response.json()
        assert float(row["kWh_Tot_Diff"]) > 0
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert out.decode().strip().endswith("stopped")
