"""Benchmark: the first history import (one year of 15-minute Summary history) into statistics.

Run by ``scripts/bench history`` (pytest is only the harness that gives us a real Home
Assistant with its recorder; nothing here asserts a time). The simulator runs in a
separate process so the CPU figures are Home Assistant's (recorder thread included) and
the integration's alone.

For 10 and 100 meters that first reported 365 days ago, from ``async_setup`` of the
config entry until the import task has finished and the recorder has written every row
(``async_wait_recording_done``):

* wall time, and when the import task itself finished (what is left after it is the
  recorder's queue; the importer waits for the recorder between chunks, so little is);
* CPU time of this process (``time.process_time``: every thread, the recorder's too) and
  of the simulator process (from ``/proc``, for scale only);
* HTTP requests to the simulator (``/_sim/requests``) and the Summary client's counter;
* statistics rows handed to the recorder (``rows_written``) and rows in the database;
* peak memory: the growth of this process's ``ru_maxrss`` over the run (each size runs
  in its own pytest process: ``scripts/bench history`` does that);
* the event loop's largest stall: a task sleeps 10 ms in a loop and records how late
  it woke (and how many wake-ups were more than 100 ms late).

Closer to a real Home Assistant than phcc's defaults, which would otherwise dominate the
figures: the recorder writes an SQLite file (``persistent_database``), not memory; SQL is
not logged (phcc sets ``sqlalchemy.engine`` to INFO: one log record per statement, two
per imported row) and the event loop is not in asyncio debug mode (which records a
traceback for every callback scheduled). ``scripts/bench`` also runs pytest with
``-p no:logging`` so captured log records do not count as memory. phcc's test recorder
still commits after every task (``commit_interval`` 0); a statistics import commits once
per task either way. Set ``EKM_BENCH_PROFILE=1`` to save a cProfile of the event loop
thread under .bench/ (py-spy ``--threads`` shows the recorder thread too).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
import contextlib
import cProfile
import ctypes
import functools
import json
import logging
import os
from pathlib import Path
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp
from homeassistant.components.recorder.core import Recorder
from homeassistant.components.recorder.db_schema import Statistics, StatisticsMeta
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance, session_scope
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.ekm.const import CONF_SERVER, DOMAIN

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".bench" / "history.json"
HISTORY_DAYS = 365
TICK_S = 0.010  # the stall probe's sleep
STALL_MS = 100.0  # the goal: no stall over this
WATCH_S = 0.005  # the watchdog's sampling period while the loop is stalled
SIM_SCRIPT = """
import asyncio, sys
from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import Fleet, SimClock, run_ticker

async def main(port: int, meters: int, days: float) -> None:
    fleet = Fleet.generate(meters, clock=SimClock(), history_days=days)
    fleet.backfill(2)
    sim = CloudSimulator(fleet)
    await sim.start("127.0.0.1", port)
    await run_ticker(fleet, 1.0)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
"""


def _out(line: str) -> None:
    print(line, file=sys.__stdout__, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _sim_command(port: int, meters: int) -> list[str]:
    """``python -m ekmsim --history-days`` where it has the option, else our own script."""
    help_text = subprocess.run(
        [sys.executable, "-m", "ekmsim", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "--history-days" in help_text:
        return [
            *(sys.executable, "-m", "ekmsim", "--port", str(port), "--meters", str(meters)),
            *("--history-days", str(HISTORY_DAYS), "--backfill", "2"),
        ]
    return [sys.executable, "-c", SIM_SCRIPT, str(port), str(meters), str(HISTORY_DAYS)]


def _busy_s() -> float:
    """CPU seconds every process on the machine has used (from /proc/stat; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _code_version() -> str:
    """The commit measured, ``+dirty`` when the integration has uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    run = functools.partial(subprocess.run, check=False, capture_output=True, text=True)
    head = run([*git, "rev-parse", "--short", "HEAD"])
    dirty = run([*git, "status", "--porcelain", "--", "custom_components"])
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc (0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Looked up here, not in the forked child (which must only make the call).
_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the simulator: be terminated when this process dies (a killed run leaves none)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.asynccontextmanager
async def _simulator(meters: int) -> AsyncIterator[tuple[str, int]]:
    port = _free_port()
    process = subprocess.Popen(  # noqa: ASYNC220
        _sim_command(port, meters),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - one C call, no lock taken
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
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _sim_requests(url: str, *, reset: bool = False) -> dict[str, int]:
    method = "DELETE" if reset else "GET"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{url}/_sim/requests") as response,
    ):
        data = await response.json()
    return {k: int(v) for k, v in data["counts"].items() if v}


class _StallProbe:
    """Sleeps TICK_S in a loop; how late each wake-up was is how long the loop was busy.

    A watchdog thread samples the loop thread's stack every WATCH_S while a wake-up is
    more than STALL_MS / 2 overdue, so each stall over STALL_MS is reported with the code
    the loop was running most of that time (its innermost frame outside asyncio).
    """

    def __init__(self) -> None:
        self.max_ms = 0.0
        self.over = 0  # wake-ups later than STALL_MS
        self.samples = 0
        self.worst_at_s = 0.0  # when the worst one ended, from start()
        self.max_since_mark_ms = 0.0  # the worst since mark() (after setup: the import)
        self.stalls: list[dict[str, Any]] = []  # every stall over STALL_MS
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self._due = 0.0  # when the probe should wake next (perf_counter)
        self._seen: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall watchdog", daemon=True)
        self._loop_thread = threading.get_ident()

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stall probe")
        self._thread.start()

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            self._due = before + TICK_S
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            late = (now - before - TICK_S) * 1000
            self.samples += 1
            with self._lock:
                seen, self._seen = self._seen, collections.Counter()
            if late > STALL_MS:
                self.over += 1
                where = [f"{site} ({n})" for site, n in seen.most_common(2)]
                self.stalls.append(
                    {"at_s": round(now - self._t0, 2), "ms": round(late), "in": where}
                )
            if late > self.max_ms:
                self.max_ms, self.worst_at_s = late, now - self._t0
            self.max_since_mark_ms = max(self.max_since_mark_ms, late)

    def mark(self) -> None:
        """Start the second maximum from the next wake-up on."""
        self.max_since_mark_ms = 0.0

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            if not self._due or time.perf_counter() - self._due < STALL_MS / 2000:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            site = "?"
            while frame is not None:
                name = frame.f_code.co_filename
                if not any(part in name for part in _PLUMBING):
                    site = f"{_short(name)}:{frame.f_lineno} {frame.f_code.co_name}"
                    break
                frame = frame.f_back
            with self._lock:
                self._seen[site] += 1

    async def stop(self) -> None:
        assert self._task is not None
        self._stop.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._thread.join()


# Frames skipped when naming what a stalled loop was doing (the loop's own machinery).
_PLUMBING = ("/asyncio/", "/selectors.py", "/contextlib.py", "/functools.py", "<frozen")


def _short(path: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _db_rows(hass: HomeAssistant) -> tuple[int, int]:
    """(statistics rows, statistic ids) of the integration in the database."""
    with session_scope(hass=hass, read_only=True) as session:
        ids = [
            row.id
            for row in session.query(StatisticsMeta.id).filter(StatisticsMeta.source == DOMAIN)
        ]
        rows = session.query(Statistics).filter(Statistics.metadata_id.in_(ids)).count()
    return rows, len(ids)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _save(row: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[str(row["meters"])] = row
    RESULTS.write_text(json.dumps(results, indent=2))
    _out(f"BENCH history {json.dumps(row)}")


@pytest.fixture
def persistent_database() -> bool:
    """The recorder on an SQLite file, as in a real install (not phcc's in-memory one)."""
    return True


@pytest.fixture(autouse=True)
def no_sql_logging() -> Iterator[None]:
    """No log record per SQL statement (phcc's INFO), as in a real Home Assistant.

    Autouse, so it runs before the recorder creates its engine.
    """
    logger = logging.getLogger("sqlalchemy.engine")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("meters", [10, 100])
async def test_history_backfill(
    recorder_mock: Recorder,  # first: the recorder must exist before Home Assistant starts
    hass: HomeAssistant,
    enable_custom_integrations: None,
    socket_enabled: None,
    meters: int,
) -> None:
    """Measure the first import of one year of history for one fleet size."""
    code = _code_version()  # now: the integration was imported at collection
    hass.loop.set_debug(False)  # phcc runs the loop in debug mode; Home Assistant does not
    async with _simulator(meters) as (url, sim_pid):
        entry = MockConfigEntry(
            domain=DOMAIN,
            unique_id="1010",
            data={CONF_API_KEY: "MTAxMDoyMDIw", CONF_SERVER: url},
        )
        entry.add_to_hass(hass)
        await _sim_requests(url, reset=True)
        probe = _StallProbe()
        profile = cProfile.Profile() if os.environ.get("EKM_BENCH_PROFILE") else None
        rss0 = _maxrss_mib()
        sim_cpu0, busy0 = _cpu_of(sim_pid), _busy_s()
        probe.start()
        if profile:
            profile.enable()
        wall0, cpu0 = time.perf_counter(), time.process_time()

        assert await hass.config_entries.async_setup(entry.entry_id)
        setup_s = time.perf_counter() - wall0
        probe.mark()  # the entry is set up (entities registered); the import goes on
        history = entry.runtime_data.history
        assert history is not None, "no history coordinator (recorder not loaded?)"
        imports = [
            t
            for t in hass._background_tasks
            if "history import" in t.get_name()  # type: ignore[attr-defined]
        ]
        assert imports, "the first history import did not start"
        await asyncio.gather(*imports)
        import_s = time.perf_counter() - wall0
        await hass.async_block_till_done(wait_background_tasks=True)
        await async_wait_recording_done(hass)

        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if profile:
            profile.disable()
        sim_cpu = _cpu_of(sim_pid) - sim_cpu0
        others = _busy_s() - busy0 - cpu - sim_cpu  # the machine's other work meanwhile
        await probe.stop()
        rss_peak = _maxrss_mib() - rss0
        requests = await _sim_requests(url)
        db_rows, stat_ids = await get_instance(hass).async_add_executor_job(_db_rows, hass)
        ok = history.last_update_success
        progress = [m.progress(int(time.time() * 1000)) for m in history.meters.values()]
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()

    if profile:
        path = RESULTS.with_name(f"history-{meters}.prof")
        profile.dump_stats(path)
        _out(f"BENCH history profile of the event loop thread: {path}")
    row = {
        "meters": meters,
        "history_days": HISTORY_DAYS,
        "code": code,
        "import_ok": ok,
        "min_progress": min((p for p in progress if p is not None), default=None),
        "wall_s": round(wall, 2),
        "setup_call_s": round(setup_s, 3),
        "import_task_s": round(import_s, 2),
        "recorder_tail_s": round(wall - import_s, 2),
        "cpu_s": round(cpu, 2),
        "sim_cpu_s": round(sim_cpu, 2),
        # CPU cores other processes kept busy on average (> 0.2: the figures are disturbed).
        "other_load_cores": round(max(0.0, others) / wall, 2) if wall else None,
        "cores": os.cpu_count(),
        "http_requests": sum(requests.values()),
        "requests_by_endpoint": requests,
        "summary_client_requests": history.client.requests,
        "rows_written": history.rows_written,
        "db_statistics_rows": db_rows,
        "statistic_ids": stat_ids,
        "rows_per_s": round(db_rows / wall) if wall else None,
        "peak_rss_growth_mib": round(rss_peak, 1),
        "max_loop_stall_ms": round(probe.max_ms, 1),
        "worst_stall_at_s": round(probe.worst_at_s, 2),
        "max_stall_after_setup_ms": round(probe.max_since_mark_ms, 1),
        "stalls_over_100ms": probe.over,
        "probe_wakeups": probe.samples,
        "stalls": sorted(probe.stalls, key=lambda s: -s["ms"])[:10],
    }
    _save(row)
