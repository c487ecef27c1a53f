"""Shared fixtures: the simulated EKM world over real sockets, and a secret-leak guard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
import logging

import pytest

from ekmsim.cloud import CloudSimulator, Faults
from ekmsim.fleet import (
    DEMO_ACCOUNT_KEY,
    DEMO_API_TOKEN,
    DEMO_GARAGE_MAC,
    DEMO_GATEWAY_KEY,
    DEMO_GATEWAY_MAC,
    DEMO_LAN_KEY,
    DEMO_METER_KEY,
    Fleet,
    lan_key,
)
from ekmsim.lan import LanSimulator

# The test plugin logs every SQL statement of the recorder at INFO; the history tests
# write thousands of statistics rows, and that is only noise (and time).
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)

# Every key the simulated world knows; none may ever reach a log record.
KNOWN_SECRETS: set[str] = {DEMO_ACCOUNT_KEY, DEMO_GATEWAY_KEY, DEMO_METER_KEY, DEMO_API_TOKEN}
KNOWN_SECRETS |= {DEMO_LAN_KEY, lan_key(DEMO_GARAGE_MAC)}  # the Push3s' LAN keys


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_secret_in_logs() -> Iterator[None]:
    """Fail any test in which a log record (at any level, any logger) holds a key."""
    recorder = _Recorder()
    root = logging.getLogger()
    ours = [logging.getLogger(name) for name in ("custom_components.ekm", "ekmsim", "pyekm")]
    levels = [logger.level for logger in ours]
    for logger in ours:
        logger.setLevel(logging.DEBUG)
    root.addHandler(recorder)
    try:
        yield
    finally:
        root.removeHandler(recorder)
        for logger, level in zip(ours, levels, strict=True):
            logger.setLevel(level)
    secrets = KNOWN_SECRETS | _extra_secrets
    for record in recorder.records:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1]) + str(record.exc_info[1])
        leaked = [s for s in secrets if s and s in text]
        assert not leaked, f"secret in log record from {record.name}: {text[:200]}"
    _extra_secrets.clear()


_extra_secrets: set[str] = set()


def add_secret(secret: str) -> None:
    """Register a secret a test made up, so the leak guard checks it too."""
    _extra_secrets.add(secret)


@pytest.fixture
def guard_secrets() -> Callable[..., None]:
    """``guard_secrets(*secrets)``: made-up secrets the leak guard checks in this test."""
    return lambda *secrets: _extra_secrets.update(secrets)


@pytest.fixture(autouse=True)
def loopback_sockets(socket_enabled: None) -> None:
    """Allow real sockets: the simulators listen on loopback (connects stay 127.0.0.1)."""


@pytest.fixture
def fleet() -> Fleet:
    """EKM's demo account: two gateways, v3/v4/v5 and a solar meter."""
    world = Fleet.demo()
    world.advance_to(world.clock.now())
    return world


@pytest.fixture
async def cloud(fleet: Fleet) -> AsyncIterator[CloudSimulator]:
    """The simulated EKM Push cloud on a real loopback port.

    Its gateways apply commands at once (no real-time wait in a test).
    """
    sim = CloudSimulator(fleet)
    sim.faults.command_delay_s = 0
    await sim.start(host="127.0.0.1", port=0)
    try:
        yield sim
    finally:
        await sim.stop()


@dataclass(frozen=True, slots=True)
class Push3Lan:
    """The simulated Push3s' LAN API; ``host``/``key`` are the Demo Push3's."""

    sim: LanSimulator
    fleet: Fleet
    faults: Faults  # the lan_* knobs (the cloud fixture's own Faults when both are used)
    host: str  # "127.0.0.1:<port>"
    key: str  # DEMO_LAN_KEY
    mac: str = DEMO_GATEWAY_MAC

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the Demo Push3."""
        return f"http://{self.host}"


@pytest.fixture
async def push3_lan(fleet: Fleet, request: pytest.FixtureRequest) -> AsyncIterator[Push3Lan]:
    """Every gateway of the demo fleet serving its LAN readMeter API on a loopback port.

    With the ``cloud`` fixture in the same test both share the fleet and one Faults, so
    the cloud's ``/_sim/faults`` (or ``cloud.faults``) sets the ``lan_*`` knobs too.
    """
    faults = request.getfixturevalue("cloud").faults if "cloud" in request.fixturenames else None
    sim = LanSimulator(fleet, faults=faults)
    await sim.start(host="127.0.0.1", base_port=0)
    demo = sim.gateway(DEMO_GATEWAY_MAC)
    try:
        yield Push3Lan(sim=sim, fleet=fleet, faults=sim.faults, host=demo.host, key=demo.key)
    finally:
        await sim.stop()
