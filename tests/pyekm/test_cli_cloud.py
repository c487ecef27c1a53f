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

from custom_components.ekm.pyekm import MeterReading, Source, cli, cli_control
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_API_TOKEN,
    DEMO_GATEWAY_MAC,
    DEMO_METER,
    Fleet,
    SimClock,
)

ROOT = Path(__file__).resolve().parents[2]
START = 1_790_000_000.0
SECRETS = (DEMO_ACCOUNT_KEY, DEMO_API_TOKEN)


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
    for secret in SECRETS:
        assert secret not in out
        assert secret not in err
    assert "Traceback" not in err
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


# --- ekm cloud relay / command / triggers ------------------------------------------------------


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config) -> None:
    """No EKM_TOKEN from the environment, and the API token checked by the leak guard."""
    monkeypatch.delenv(cli_control.TOKEN_ENV, raising=False)
    for plugin in pytestconfig.pluginmanager.get_plugins():
        if str(getattr(plugin, "__file__", "")).endswith("tests/conftest.py"):
            plugin.add_secret(DEMO_API_TOKEN)


def control(
    capsys: pytest.CaptureFixture[str], cloud: ThreadedCloud, *argv: str, token: bool = True
) -> tuple[int, list[Any], str]:
    """Run ``ekm cloud <argv>`` against the simulator with the demo key (and token)."""
    auth = ["--key", DEMO_ACCOUNT_KEY, *(["--token", DEMO_API_TOKEN] if token else [])]
    return run(capsys, "cloud", *argv, "--server", cloud.url, *auth)


def error_line(err: str) -> dict[str, str]:
    [line] = err.splitlines()
    parsed: dict[str, str] = json.loads(line)
    return parsed


@pytest.mark.usefixtures("token_env")
def test_relay(cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = control(
        capsys, cloud_thread, "relay", "--gateway", "40:16:FA:05:00:CD", "--meter", "10389",
        "--relay", "2", "--state", "on", "--duration", "30", token=False,
    )  # fmt: skip
    assert code == 0, err
    [answer] = lines
    assert set(answer) == {"msg_id", "response_channel_id", "response_channel_host"}
    [command] = cloud_thread.sim.control.commands
    assert answer["msg_id"] == command.msg_id
    assert command.body["params"] == {"relay": "relay_2", "status": "close", "duration": 30}
    assert command.body["target_id"] == DEMO_METER
    assert command.gateway == DEMO_GATEWAY_MAC

    code, _, err = control(
        capsys, cloud_thread, "relay", "--gateway", DEMO_GATEWAY_MAC, "--meter", DEMO_METER,
        "--relay", "1", "--state", "off",
    )  # fmt: skip
    assert code == 0, err
    last = cloud_thread.sim.control.commands[-1]
    assert last.body["params"] == {"relay": "relay_1", "status": "open", "duration": 0}


@pytest.mark.usefixtures("token_env")
def test_command(cloud_thread: ThreadedCloud, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = control(
        capsys, cloud_thread, "command", "--gateway", DEMO_GATEWAY_MAC, "--command", "SetRelay",
        "--target", "meter", "--target-id", "10389",
        "--params", '{"relay": "relay_1", "status": "close", "duration": 5}',
    )  # fmt: skip
    assert code == 0, err
    assert lines[0]["msg_id"] == cloud_thread.sim.control.commands[-1].msg_id
    assert cloud_thread.sim.control.commands[-1].body["target_id"] == DEMO_METER

    code, lines, err = control(
        capsys, cloud_thread, "command", "--gateway", DEMO_GATEWAY_MAC, "--command", "SetLcd",
        "--target", "meter", "--target-id", DEMO_METER,
    )  # fmt: skip
    assert (code, lines) == (1, [])
    assert error_line(err) == {
        "error": "EkmInvalidParametersError",
        "message": "EKM rejected the request's parameters: "
        "Unknown command 'SetLcd' (known: SetRelay)",
    }

    code, lines, err = control(
        capsys, cloud_thread, "command", "--gateway", DEMO_GATEWAY_MAC, "--command", "SetRelay",
        "--target", "meter", "--target-id", "meter-one",
    )  # fmt: skip
    assert (code, lines) == (2, [])
    assert error_line(err) == {
        "error": "UsageError",
        "message": "--target-id: A meter address is 1 to 12 digits",
    }


@pytest.mark.usefixtures("token_env")
def test_triggers(
    cloud_thread: ThreadedCloud,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = cloud_thread.sim.fleet
    [seeded] = fleet.triggers[DEMO_GATEWAY_MAC]
    code, lines, err = control(capsys, cloud_thread, "triggers", "list", "--gateway",
                               DEMO_GATEWAY_MAC)  # fmt: skip
    assert code == 0, err
    assert [t["trigger_uuid"] for t in lines] == [seeded]
    code, lines, _ = control(capsys, cloud_thread, "triggers", "get", "--trigger", seeded)
    assert lines == [fleet.triggers[DEMO_GATEWAY_MAC][seeded]]

    definition = tmp_path / "trigger.json"
    definition.write_text('{"trigger_name": "Porch", "enabled": false}')
    code, lines, err = control(capsys, cloud_thread, "triggers", "create", "--gateway",
                               DEMO_GATEWAY_MAC, "--file", str(definition))  # fmt: skip
    assert code == 0, err
    [created] = lines
    uuid = created["trigger_uuid"]
    assert created == {"trigger_uuid": uuid, "gateway": DEMO_GATEWAY_MAC,
                       "trigger_name": "Porch", "enabled": False}  # fmt: skip

    monkeypatch.setattr("sys.stdin", io.StringIO('{"trigger_name": "Porch 2"}'))
    monkeypatch.setenv(cli_control.TOKEN_ENV, DEMO_API_TOKEN)
    code, lines, err = control(capsys, cloud_thread, "triggers", "update", "--trigger", uuid,
                               "--file", "-", token=False)  # fmt: skip
    assert code == 0, err
    assert lines[0]["trigger_name"] == "Porch 2"
    assert fleet.triggers[DEMO_GATEWAY_MAC][uuid]["trigger_name"] == "Porch 2"

    code, lines, _ = control(capsys, cloud_thread, "triggers", "delete", "--trigger", uuid)
    assert lines == [{"trigger_uuid": uuid, "deleted": True}]
    code, lines, err = control(capsys, cloud_thread, "triggers", "get", "--trigger", uuid)
    assert (code, lines) == (1, [])
    assert error_line(err) == {
        "error": "EkmTriggerNotFoundError",
        "message": "EKM knows no trigger with that id",
    }


@pytest.mark.usefixtures("token_env")
@pytest.mark.parametrize(
    ("argv", "change", "error", "message"),
    [
        (["triggers", "list", "--gateway", DEMO_GATEWAY_MAC], "no token",
         "EkmTokenRequiredError", "The EKM Trigger API requires an API token"),
        (["triggers", "list", "--gateway", DEMO_GATEWAY_MAC], "revoke",
         "EkmTokenError", "The EKM server rejected the key or API token"),
        (["relay", "--gateway", DEMO_GATEWAY_MAC, "--meter", DEMO_METER, "--relay", "1",
          "--state", "on"], "revoke no token",
         "EkmForbiddenError", "The EKM server rejected the key"),
        (["relay", "--gateway", DEMO_GATEWAY_MAC, "--meter", DEMO_METER, "--relay", "1",
          "--state", "on"], "token required",
         "EkmTokenRequiredError", "This EKM server requires an API token"),
        (["triggers", "get", "--trigger", "0" * 32], "",
         "EkmTriggerNotFoundError", "EKM knows no trigger with that id"),
        (["triggers", "delete", "--trigger", "0" * 32], "429",
         "EkmRateLimitError", "Rate limited by the EKM server, retry after 30 s"),
    ],
)  # fmt: skip
def test_control_errors(
    cloud_thread: ThreadedCloud,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    change: str,
    error: str,
    message: str,
) -> None:
    sim = cloud_thread.sim
    if "revoke" in change:
        sim.fleet.revoke(DEMO_ACCOUNT_KEY)
    if change == "token required":
        sim.faults.command_token_required = True
    if change == "429":
        sim.faults.fail_next = [429]
    code, lines, err = control(capsys, cloud_thread, *argv, token="token" not in change)
    assert (code, lines) == (1, [])
    assert error_line(err) == {"error": error, "message": message}


USAGE_DEFAULTS: dict[str, dict[str, str]] = {
    "relay": {"--gateway": DEMO_GATEWAY_MAC, "--meter": DEMO_METER, "--relay": "1",
              "--state": "on"},
    "command": {"--gateway": DEMO_GATEWAY_MAC, "--command": "SetRelay", "--target": "meter",
                "--target-id": DEMO_METER},
    "triggers create": {"--gateway": DEMO_GATEWAY_MAC},
    "triggers update": {"--trigger": "0" * 32},
}  # fmt: skip


@pytest.mark.usefixtures("token_env")
@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("relay", {"--relay": "3"}, "argument --relay: invalid choice: '3'"),
        ("relay", {"--duration": "10000"}, "argument --duration: seconds from 0 to 9999"),
        ("relay", {"--duration": "soon"}, "argument --duration: seconds from 0 to 9999"),
        ("relay", {"--gateway": "4016fa"}, "argument --gateway: A gateway MAC address is 12"),
        ("relay", {"--meter": "x"}, "argument --meter: A meter address is 1 to 12 digits"),
        ("command", {"--params": "[1,"}, "argument --params: not valid JSON (line 1 column 4)"),
        ("command", {"--params": "[1]"}, "argument --params: not a JSON object"),
        ("triggers get", {"--trigger": "1234"},
         "argument --trigger: A trigger id is 32 hexadecimal digits"),
        ("triggers get", {}, "the following arguments are required: --trigger"),
        ("triggers update", {}, "the following arguments are required: --file"),
        ("triggers list", {}, "the following arguments are required: --gateway"),
        ("triggers create", {"--file": "{missing}"},
         "argument --file: cannot read {missing}: No such file or directory"),
        ("triggers create", {"--file": "{dir}"},
         "argument --file: cannot read {dir}: Is a directory"),
        ("triggers create", {"--file": "{bad}"},
         "argument --file: {bad} is not valid JSON (line 1 column 1)"),
        ("triggers create", {"--file": "{binary}"},
         "argument --file: cannot read {binary}: not UTF-8 text"),
        ("triggers create", {"--file": "{list}"}, "argument --file: {list} is not a JSON object"),
    ],
)  # fmt: skip
def test_control_usage_errors(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
    options: dict[str, str],
    message: str,
) -> None:
    files = {"missing": tmp_path / "none.json", "dir": tmp_path, "bad": tmp_path / "bad.json",
             "binary": tmp_path / "binary.json", "list": tmp_path / "list.json"}  # fmt: skip
    files["bad"].write_text(f"token {DEMO_API_TOKEN}")
    files["binary"].write_bytes(b'{"trigger_name": "\xff"}')
    files["list"].write_text("[]")
    names = {name: str(path) for name, path in files.items()}
    args = {**USAGE_DEFAULTS.get(command, {}), **options}
    argv = [*command.split(), *(arg.format(**names) for arg in itertools.chain(*args.items()))]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cloud", *argv, "--key", DEMO_ACCOUNT_KEY, "--token", DEMO_API_TOKEN])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err
    for secret in SECRETS:
        assert secret not in err
    assert "Traceback" not in err
