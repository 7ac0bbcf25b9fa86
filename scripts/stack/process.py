"""Process control: spawn a service in its own process group with pid and log files, stop it
by its recorded pid, and the one poll loop every wait of the stack uses."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from stack.settings import Settings


def _pid_file(settings: Settings, name: str) -> Path:
    pid_dir = settings.state_dir / "pids"
    pid_dir.mkdir(parents=True, exist_ok=True)
    return pid_dir / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir / f"{name}.log"


def _spawn(settings: Settings, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a process in its own process group, logging to .stack/logs/<name>.log."""
    log = open(_log_file(settings, name), "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=settings.state_dir,
        start_new_session=True,
    )
    _pid_file(settings, name).write_text(str(proc.pid))
    return proc


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group (every service runs in its own group)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                pass
    return members


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def service_pid(settings: Settings, name: str) -> int | None:
    """The pid of a service of the stack (recorded in <state>/pids/) if that process is alive."""
    pid_file = _pid_file(settings, name)
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    return pid if _running(pid) else None


# PostgreSQL shuts down cleanly and at once on SIGINT ("fast" shutdown); SIGTERM waits for clients.
_STOP_SIGNALS = {"postgres": signal.SIGINT}


def poll_until(
    check: Callable[[], object],
    timeout: float,
    what: str,
    *,
    interval: float = 0.5,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
) -> object:
    """Call `check` every `interval` seconds until it returns something truthy, and return that.

    The one wait loop of the stack. `check` raising one of `retry_on` counts as "not yet" (the
    last such error ends up in the timeout's message). Raises RuntimeError with the tail of
    `log` as soon as `proc` (the process being waited for) has exited, and TimeoutError naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting. Log tail:\n{tail}")
        try:
            result = check()
            if result:
                return result
        except retry_on as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"{what} not ready within {timeout:.0f}s{detail}")
        time.sleep(interval)


def _gone(pid: int) -> bool:
    """Whether process `pid` has exited (reaped if it is our child)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return not _running(pid)


def stop_process(settings: Settings, name: str, timeout: float = 20) -> bool:
    """Stop the process group started under `name`, by its recorded pid. True if one was running."""
    pid_file = _pid_file(settings, name)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    was_running = _running(pid)
    if was_running:
        for sig in (_STOP_SIGNALS.get(name, signal.SIGTERM), signal.SIGKILL):
            try:
                os.killpg(pid, sig)
                poll_until(lambda: _gone(pid), timeout, f"{name} stopping", interval=0.2)
                break
            except ProcessLookupError:
                break
            except TimeoutError:
                continue
        # The group may hold children that outlive the leader (gunicorn, airflow's
        # components): make sure nothing of the group is left.
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file.unlink()
    return was_running


def _http_answers(url: str) -> bool:
    """True when url answers below 500; raises OSError (HTTPError for 5xx) otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            return True
        raise


def wait_http(url: str, proc: subprocess.Popen | None, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll url until it answers below 500; fail early if the process died."""
    poll_until(lambda: _http_answers(url), timeout, f"{what} at {url}", proc=proc, log=log, retry_on=(OSError,))
