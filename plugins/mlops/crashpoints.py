"""Named crash points for the kill tests: a state-changing step calls crash_point("step") between
its writes, and a test sets MLOPS_CRASH_AT=step to SIGKILL the process there (as a lost worker
would), then checks that the retry completes the work."""

from __future__ import annotations

import logging
import os
import signal

CRASH_AT_ENV = "MLOPS_CRASH_AT"

log = logging.getLogger(__name__)


def crash_point(step: str) -> None:
    """SIGKILL this process here if MLOPS_CRASH_AT names this step (the kill tests only)."""
    if os.environ.get(CRASH_AT_ENV) == step:
        log.warning("%s=%s: killing this process", CRASH_AT_ENV, step)
        os.kill(os.getpid(), signal.SIGKILL)
