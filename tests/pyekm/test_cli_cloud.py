"""``ekm cloud ...``: the CLI in-process (simulator in a thread) and scripts/ekm once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
import io
import itertools
import json
import os
from pathlib import Path
import signal
import socket
import threading
import time
from typing import Any

import pytest

from custom_components.ekm.pyekm import MeterReading, Source, cli
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_ACCOUNT_KEY, DEMO_GATEWAY_MAC, DEMO_METER, Fleet, SimClock

ROOT = Path(__file__).resolve().parents[2]
START = 1_790_000_000.0


def make_fleet() -> Fleet:
    fleet = Fleet.demo(clock=SimClock(START, manual=True))
    fleet.backfill(5)
    return fleet


class ThreadedCloud:
    """The cloud simulator on its own event loop thread (the CLI runs asyncio.run)."""

    def __init__(self, fleet: Fleet) -> None:
        self.sim = CloudSimulator(fleet)
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="sim")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.url = await self.sim.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.sim.stop()

    def __enter__(self) -> ThreadedCloud:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def cloud_thread() -> Iterator[ThreadedCloud]:
    with ThreadedCloud(make_fleet()) as threaded:
        yield threaded


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any], str]:
    """Run the CLI; returns the exit code, stdout JSON lines and stderr."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert DEMO_ACCOUNT_KEY not in out
    assert DEMO_ACCOUNT_KEY not in err
    return code, [json.loads(line) for line in out.splitlines()], err


def test_account(cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(
        capsys, "cloud", "account", "--server", cloud_thread.url, "--key", DEMO_ACCOUNT_KEY
    )
    assert code == 0
    [account] = lines
    assert account["key_type"] == "account"
    assert account["host"] == "psrv1.ekmmetering.com"
    gateways = {gw["mac"]: gw for gw in account["gateways"]}
    assert gateways[DEMO_GATEWAY_MAC]["meters"] == [DEMO_METER, "000000010388"]
    devices = {d["address"]: d for d in account["devices"]}
    assert devices[DEMO_METER] == {"address": DEMO_METER, "kind": "meter",
                                   "gateway": DEMO_GATEWAY_MAC}  # fmt: skip
    assert devices["000300000001"]["gateway"] is None


def test_realtime_with_options(
    cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = list(cloud_thread.sim.fleet.history(DEMO_METER))
    since = int(stored[-4]["Time_Stamp_UTC_ms"])
    code, lines, _ = run(
        capsys, "cloud", "realtime", "--server", cloud_thread.url, "--key", DEMO_ACCOUNT_KEY,
        "--meters", "10389~~10388", "--count", "2", "--fields", "kWh_Tot~RMS_Watts_Tot",
        "--since", str(since), "--timezone", "America/New_York", "--timeout", "5",
    )  # fmt: skip
    assert code == 0
    assert [line["address"] for line in lines] == ["000000010388"] * 2 + [DEMO_METER] * 2
    last = lines[-1]
    assert last["timestamp_ms"] == stored[-1]["Time_Stamp_UTC_ms"]
    assert last["source"] == "cloud"
    assert last["protocol"] == "v4"
    assert last["gateway"] == DEMO_GATEWAY_MAC
    assert last["time"].startswith("2026-09-21T")
    assert last["values"]["kWh_Tot"] == stored[-1]["kWh_Tot"]
    assert set(last["values"]) == {"Good", "Date", "Time", "Time_Stamp_UTC_ms", "kWh_Tot",
                                   "RMS_Watts_Tot"}  # fmt: skip
    [(_, query), *_] = cloud_thread.sim.request_log
    assert query["timezone"] == "America~New_York"


def test_realtime_every_meter(
    cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = run(
        capsys, "cloud", "realtime", "--server", cloud_thread.url, "--key", DEMO_ACCOUNT_KEY
    )
    assert code == 0
    assert [line["address"] for line in lines] == sorted(cloud_thread.sim.fleet.meters)
    assert cloud_thread.sim.requests == {"account": 1, "readMeter": 1}


def test_error_is_reported_without_the_key(
    cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud_thread.sim.fleet.revoke(DEMO_ACCOUNT_KEY)
    code, lines, err = run(
        capsys, "cloud", "account", "--server", cloud_thread.url, "--key", DEMO_ACCOUNT_KEY
    )
    assert code == 1
    assert lines == []
    assert json.loads(err) == {
        "error": "EkmForbiddenError",
        "message": "The EKM server rejected the key",
    }


def test_ctrl_c_exits_130(cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGINT while a request hangs: asyncio.run cancels it and the CLI exits 130."""
    sim = cloud_thread.sim
    sim.faults.latency_s = 60  # released when the simulator stops
    main_thread = threading.get_ident()

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while not sim.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main_thread, signal.SIGINT)

    helper = threading.Thread(target=interrupt)
    helper.start()
    try:
        code = cli.main(
            ["cloud", "account", "--server", cloud_thread.url, "--key", DEMO_ACCOUNT_KEY]
        )
    finally:
        helper.join()
    assert code == 130
    assert DEMO_ACCOUNT_KEY not in "".join(capsys.readouterr())


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cloud", "account"])
    assert exit_info.value.code == 2
    assert "--key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([])


def test_reading_json_and_emit() -> None:
    reading = MeterReading.from_raw(
        "10389", {"Time_Stamp_UTC_ms": 0, "kWh_Tot": "1.5"}, Source.RS485, protocol="v3"
    )
    stream = io.StringIO()
    cli.emit(cli.reading_json(reading, extra=1), stream)
    assert json.loads(stream.getvalue()) == {
        "address": DEMO_METER,
        "timestamp_ms": 0,
        "time": "1970-01-01T00:00:00+00:00",
        "source": "rs485",
        "protocol": "v3",
        "extra": 1,
        "values": {"Time_Stamp_UTC_ms": 0, "kWh_Tot": 1.5},
    }


# --- scripts/ekm in a subprocess -----------------------------------------------------------


@pytest.fixture
async def cloud_sim() -> AsyncIterator[CloudSimulator]:
    async with CloudSimulator(make_fleet()) as sim:
        yield sim


async def test_scripts_ekm_prints_a_normalized_reading(cloud_sim: CloudSimulator) -> None:
    assert cloud_sim.url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "ekm"), "cloud", "realtime", "--server", cloud_sim.url,
        "--key", DEMO_ACCOUNT_KEY, "--meters", "10389",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)

    assert process.returncode == 0, stderr.decode()
    out, err = stdout.decode(), stderr.decode()
    assert DEMO_ACCOUNT_KEY not in out
    assert DEMO_ACCOUNT_KEY not in err
    [line] = [json.loads(text) for text in out.splitlines()]
    latest = cloud_sim.fleet.latest(DEMO_METER)
    assert latest is not None
    assert line["address"] == DEMO_METER
    assert line["timestamp_ms"] == latest["Time_Stamp_UTC_ms"]
    assert line["values"]["kWh_Tot"] == latest["kWh_Tot"]
    assert isinstance(line["values"]["kWh_Tot"], float)
    assert line["values"]["Power_Factor_Ln_1"] == latest["Power_Factor_Ln_1"]
    assert line["values"]["Net_Calc_Watts_Tot"] == latest["RMS_Watts_Tot"]
    assert cloud_sim.requests == {"readMeter": 1}


# --- ekm cloud summary -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "2026-09-21 10:00"], "argument --start: expected YYYY-MM-DDTHH:MM"),
        (["--timezone", "Mars/Base"], "argument --timezone: Unknown timezone 'Mars/Base'"),
        (["--meters", "10389~x"], "argument --meters: meter numbers are 1 to 12 digits"),
        (["--meters", "~"], "argument --meters: no meter number"),
        (["--report", "mo15"], "argument --report: invalid choice"),
    ],
)
def test_summary_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    defaults = {"--meters": "10389", "--report": "hr", "--start": "2026-09-21T10:00",
                "--end": "2026-09-21T12:00"}  # fmt: skip
    args = {**defaults, **dict(zip(argv[::2], argv[1::2], strict=True))}
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cloud", "summary", "--key", DEMO_ACCOUNT_KEY,
                  *itertools.chain.from_iterable(args.items())])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert DEMO_ACCOUNT_KEY not in err
    assert "Traceback" not in err


def test_summary_end_before_start(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(
        capsys, "cloud", "summary", "--key", DEMO_ACCOUNT_KEY, "--meters", "10389",
        "--report", "hr", "--start", "2026-09-21T10:00", "--end", "2026-09-21T10:00",
    )  # fmt: skip
    assert code == 2
    assert lines == []
    assert json.loads(err) == {"error": "UsageError", "message": "--end must be after --start"}


def test_summary_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, lines, err = run(
        capsys, "cloud", "summary", "--key", DEMO_ACCOUNT_KEY, "--meters", "10389",
        "--report", "hr", "--start", "2026-09-21T10:00", "--end", "2026-09-21T12:00",
        "--server", f"http://127.0.0.1:{port}", "--timeout", "5",
    )  # fmt: skip
    assert code == 1
    assert lines == []
    [line] = err.splitlines()
    assert json.loads(line) == {
        "error": "EkmConnectionError",
        "message": "Cannot reach the EKM server (ClientConnectorError)",
    }


SUMMARY_ARGS = ("--meters", "10389~10388", "--report", "hr", "--start", "2026-09-21T06:00",
                "--end", "2026-09-21T09:00", "--timezone", "America/New_York")  # fmt: skip


def test_summary_lines(cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(
        capsys, "cloud", "summary", "--server", cloud_thread.url, "--key", DEMO_ACCOUNT_KEY,
        *SUMMARY_ARGS, "--fields", "kWh_Tot*~RMS_Watts_Tot_Average",
    )  # fmt: skip
    assert code == 0, err
    start_ms = int(datetime(2026, 9, 21, 10, tzinfo=UTC).timestamp() * 1000)  # 06:00 EDT
    assert [(line["meter"], line["start_ms"]) for line in lines] == [
        (meter, start_ms + h * 3_600_000)
        for h in range(3)
        for meter in ("000000010388", DEMO_METER)
    ]
    first = lines[0]
    assert first["end_ms"] == first["start_ms"] + 3_600_000
    assert set(first) == {
        "meter", "start_ms", "end_ms", "Count", "RMS_Watts_Tot_Average",
        *(f"kWh_Tot_{s}" for s in ("First", "Last", "Min", "Max", "Diff", "DeltaMax")),
    }  # fmt: skip
    assert all(isinstance(v, float) for k, v in first.items() if k[0].isupper())
    assert first["kWh_Tot_Diff"] == pytest.approx(first["kWh_Tot_Last"] - first["kWh_Tot_First"])
    [(name, query)] = cloud_thread.sim.request_log
    assert name == "summary"
    assert query["timezone"] == "America~New_York"
    assert (query["start_date"], query["end_date"]) == ("202609210600", "202609210900")


def test_summary_v2_matches(
    cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("cloud", "summary", "--server", cloud_thread.url, "--key", DEMO_ACCOUNT_KEY,
            *SUMMARY_ARGS)  # fmt: skip
    _, legacy, _ = run(capsys, *base)
    code, v2, _ = run(capsys, *base, "--v2")
    assert code == 0
    assert v2 == legacy
    assert len(v2) == 6
    assert cloud_thread.sim.requests == {"summary": 1, "summary_v2": 1}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("revoke", "EkmForbiddenError", "The EKM server rejected the key"),
        ("meter", "EkmApiError", "EKM status 1200: a meter is not valid for this key"),
        ("429", "EkmRateLimitError", "Rate limited by the EKM server, retry after 30 s"),
        ("503", "EkmServerError", "EKM server answered HTTP 503"),
    ],
)
def test_summary_errors(
    cloud_thread: ThreadedCloud,
    capsys: pytest.CaptureFixture[str],
    change: str,
    error: str,
    message: str,
) -> None:
    sim = cloud_thread.sim
    args = list(SUMMARY_ARGS)
    if change == "revoke":
        sim.fleet.revoke(DEMO_ACCOUNT_KEY)
    elif change == "meter":
        args[1] = "10389~12345"
    else:
        sim.faults.fail_next = [int(change)]
    code, lines, err = run(
        capsys, "cloud", "summary", "--server", cloud_thread.url, "--key", DEMO_ACCOUNT_KEY, *args
    )
    assert code == 1
    assert lines == []
    [line] = err.splitlines()
    assert json.loads(line) == {"error": error, "message": message}
    assert "Traceback" not in err
