"""Shared fixtures: the simulated EKM world over real sockets, and a secret-leak guard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
import logging

import pytest

from ekmsim.cloud import CloudSimulator
from ekmsim.fleet import DEMO_ACCOUNT_KEY, DEMO_API_TOKEN, DEMO_GATEWAY_KEY, DEMO_METER_KEY, Fleet

# The test plugin logs every SQL statement of the recorder at INFO; the history tests
# write thousands of statistics rows, and that is only noise (and time).
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)

# Every key the simulated world knows; none may ever reach a log record.
KNOWN_SECRETS: set[str] = {DEMO_ACCOUNT_KEY, DEMO_GATEWAY_KEY, DEMO_METER_KEY, DEMO_API_TOKEN}


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
