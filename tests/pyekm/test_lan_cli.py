"""``ekm lan read``: in-process against the simulated Push3s (in a thread), and scripts/ekm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import json
import os
from pathlib import Path
import socket
import threading
from typing import Any

import pytest

from custom_components.ekm.pyekm import cli, cli_lan
from ekmsim.fleet import (
    DEMO_GATEWAY_MAC,
    DEMO_LAN_KEY,
    DEMO_METER,
    DEMO_SUBPANEL_METER,
    Fleet,
    SimClock,
)
from ekmsim.lan import LanGateway, LanSimulator

ROOT = Path(__file__).resolve().parents[2]
START = 1_790_000_000.0


def make_fleet() -> Fleet:
    fleet = Fleet.demo(clock=SimClock(START, manual=True))
    fleet.backfill(5)
    return fleet


class ThreadedLan:
    """The LAN simulator on its own event loop thread (the CLI runs asyncio.run)."""

    def __init__(self, fleet: Fleet) -> None:
        self.sim = LanSimulator(fleet)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="lan")

    @property
    def demo(self) -> LanGateway:
        return self.sim.gateway(DEMO_GATEWAY_MAC)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.sim.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.sim.stop()

    def __enter__(self) -> ThreadedLan:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def lan_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedLan]:
    monkeypatch.delenv(cli_lan.KEY_ENV, raising=False)
    with ThreadedLan(make_fleet()) as threaded:
        yield threaded


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any], str]:
    """Run the CLI; returns the exit code, stdout JSON lines and stderr (no key in either)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert DEMO_LAN_KEY not in out
    assert DEMO_LAN_KEY not in err
    assert "Traceback" not in err
    return code, [json.loads(line) for line in out.splitlines()], err


def error_line(err: str) -> dict[str, str]:
    [line] = err.splitlines()  # ONE line
    parsed: dict[str, str] = json.loads(line)
    return parsed


def test_read(lan_thread: ThreadedLan, capsys: pytest.CaptureFixture[str]) -> None:
    host = lan_thread.demo.host
    code, lines, err = run(capsys, "lan", "read", "--host", host, "--key", DEMO_LAN_KEY)
    assert code == 0, err
    assert [line["address"] for line in lines] == [DEMO_SUBPANEL_METER, DEMO_METER]
    line = lines[1]
    stored = lan_thread.sim.fleet.latest(DEMO_METER)
    assert stored is not None
    # The shape of every read command: reading_json plus where it came from.
    assert list(line) == ["address", "timestamp_ms", "time", "source", "protocol", "host",
                          "values"]  # fmt: skip
    assert line["timestamp_ms"] == stored["Time_Stamp_UTC_ms"]
    assert (line["source"], line["protocol"], line["host"]) == ("lan", "v4", host)
    assert line["time"] == "2026-09-21T14:13:00+00:00"
    assert line["values"]["kWh_Tot"] == stored["kWh_Tot"]
    assert line["values"]["Power_Factor_Ln_1"] == stored["Power_Factor_Ln_1"]
    assert line["values"]["Net_Calc_Watts_Tot"] == stored["RMS_Watts_Tot"]
    assert lines[0]["protocol"] == "v3"


def test_count_and_key_from_environment(
    lan_thread: ThreadedLan, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli_lan.KEY_ENV, DEMO_LAN_KEY)
    code, lines, _ = run(
        capsys, "lan", "read", "--host", f"http://{lan_thread.demo.host}", "--count", "3"
    )
    assert code == 0
    assert [line["address"] for line in lines] == [DEMO_SUBPANEL_METER] * 3 + [DEMO_METER] * 3
    stamps = [line["timestamp_ms"] for line in lines[3:]]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3


@pytest.mark.parametrize("how", ["argument", "fault"])
def test_wrong_key(lan_thread: ThreadedLan, capsys: pytest.CaptureFixture[str], how: str) -> None:
    key = DEMO_LAN_KEY
    if how == "argument":
        key = "not-the-lan-key-0042"
    else:
        lan_thread.sim.faults.lan_wrong_key = True
    code, lines, err = run(capsys, "lan", "read", "--host", lan_thread.demo.host, "--key", key)
    assert code == 1
    assert lines == []
    assert error_line(err) == {"error": "EkmAuthError", "message": "The Push3 rejected the LAN key"}
    assert key not in err


def test_unreachable_host(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, lines, err = run(
        capsys, "lan", "read", "--host", f"127.0.0.1:{port}", "--key", DEMO_LAN_KEY,
        "--timeout", "5",
    )  # fmt: skip
    assert code == 1
    assert lines == []
    assert error_line(err) == {
        "error": "EkmConnectionError",
        "message": f"Cannot reach the Push3 at 127.0.0.1:{port} (ClientConnectorError)",
    }


def test_gateway_faults(lan_thread: ThreadedLan, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("lan", "read", "--host", lan_thread.demo.host, "--key", DEMO_LAN_KEY)
    lan_thread.sim.faults.lan_fail_next = [429, 503]
    for expected in (
        {
            "error": "EkmRateLimitError",
            "message": "Rate limited by the EKM server, retry after 30 s",
        },
        {"error": "EkmServerError", "message": "EKM server answered HTTP 503"},
    ):
        code, lines, err = run(capsys, *argv)
        assert (code, lines, error_line(err)) == (1, [], expected)
    lan_thread.sim.faults.lan_malformed = "truncated"
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert error_line(err)["error"] == "EkmResponseError"


def test_usage_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli_lan.KEY_ENV, raising=False)
    code, lines, err = run(capsys, "lan", "read", "--host", "192.0.2.1")
    assert (code, lines) == (2, [])
    assert error_line(err) == {"error": "UsageError", "message": "give --key or set $EKM_LAN_KEY"}
    code, _, err = run(capsys, "lan", "read", "--host", "192.0.2.1", "--key", "k", "--count", "0")
    assert code == 2
    assert error_line(err)["message"] == "--count must be 1 or more"
    for host in ("https://192.0.2.1", "192.0.2.1/readMeter?key=secret-in-url"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["lan", "read", "--host", host, "--key", DEMO_LAN_KEY])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "argument --host:" in err
        assert DEMO_LAN_KEY not in err
        assert "secret-in-url" not in err
    with pytest.raises(SystemExit):
        cli.main(["lan"])


# --- scripts/ekm in a subprocess -----------------------------------------------------------


@pytest.fixture
async def lan_sim() -> AsyncIterator[LanSimulator]:
    sim = LanSimulator(make_fleet())
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_scripts_ekm_lan_read(lan_sim: LanSimulator) -> None:
    demo = lan_sim.gateway(DEMO_GATEWAY_MAC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
    env[cli_lan.KEY_ENV] = demo.key
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "ekm"), "lan", "read", "--host", demo.host,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    out, err = stdout.decode(), stderr.decode()
    assert demo.key not in out
    assert demo.key not in err
    lines = [json.loads(text) for text in out.splitlines()]
    assert [line["address"] for line in lines] == [DEMO_SUBPANEL_METER, DEMO_METER]
    latest = lan_sim.fleet.latest(DEMO_METER)
    assert latest is not None
    assert lines[1]["values"]["kWh_Tot"] == latest["kWh_Tot"]
    assert lan_sim.requests == {DEMO_GATEWAY_MAC: 1}
