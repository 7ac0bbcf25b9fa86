"""Fixtures of the Docker tests: a running Docker engine and the project's image, built from
local base images (scripts/local_images.py: debootstrap + docker import), so no registry is
needed. Where no engine can start, the tests are skipped with the reason. The images stay
after the session, as the build cache of the next one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_IMAGE = "mlops-airflow:test"


def _run(argv: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def _docker_ready() -> bool:
    return shutil.which("docker") is not None and _run(["docker", "info"], timeout=30).returncode == 0


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], env=env)
    result = _run(["apt-get", "install", "-y", "-qq", *packages], env=env, timeout=900)
    if result.returncode != 0:
        pytest.skip(f"cannot install {' '.join(packages)}: {result.stderr[-500:]}")


@pytest.fixture(scope="session")
def docker_engine():
    """A running Docker engine and a compose command; starts dockerd (and stops it) if needed."""
    if os.geteuid() != 0:
        pytest.skip("the compose test needs root (Docker engine, debootstrap)")
    missing = [
        pkg for pkg, program in [("docker.io", "dockerd"), ("debootstrap", "debootstrap")] if not shutil.which(program)
    ]
    if shutil.which("docker-compose") is None and _run(["docker", "compose", "version"]).returncode != 0:
        missing.append("docker-compose")
    if missing:
        _apt_install(missing)
    started = None
    if not _docker_ready():
        log = open(Path(tempfile.gettempdir()) / "mlops-dockerd.log", "ab")  # noqa: SIM115 - owned by dockerd
        started = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not _docker_ready():
            if started.poll() is not None or time.monotonic() > deadline:
                started.kill()
                pytest.skip(f"no Docker engine could start here (dockerd exit {started.poll()}; log {log.name})")
            time.sleep(1)
    compose = ["docker", "compose"] if _run(["docker", "compose", "version"]).returncode == 0 else ["docker-compose"]
    try:
        yield compose
    finally:
        if started is not None:
            started.terminate()
            started.wait(timeout=60)


@pytest.fixture(scope="session")
def project_image(docker_engine) -> dict[str, str]:
    """The local base images and the project's image (Dockerfile) built on them:
    {"AIRFLOW_IMAGE": ..., "POSTGRES_IMAGE": ..., "REDIS_IMAGE": ..., "MLOPS_IMAGE": ...}."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import local_images

    t0 = time.monotonic()
    images = local_images.build_local_images(log=print)
    print(f"local base images ready in {time.monotonic() - t0:.0f}s")
    t0 = time.monotonic()
    build = _run(
        # On the host's network: pip reaches the package index as the host does.
        ["docker", "build", "--network=host", "-t", PROJECT_IMAGE]
        + ["--build-arg", f"AIRFLOW_IMAGE={images['AIRFLOW_IMAGE']}", str(ROOT)],
        timeout=2400,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(f"project image built in {time.monotonic() - t0:.0f}s")
    return {**images, "MLOPS_IMAGE": PROJECT_IMAGE}
