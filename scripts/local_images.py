"""Build the base images of docker-compose.yaml locally, for machines that reach no registry.

    python scripts/local_images.py [--force]

1. `mlops-local/debian:bookworm`: a Debian root filesystem made by debootstrap (from
   Debian's package mirror, which apt reaches) with python3.11, PostgreSQL and Redis,
   imported with `docker import`. The host's CA bundle goes in, so that pip in the image
   trusts the package index the host trusts.
2. `mlops-local/airflow-base`, `mlops-local/postgres`, `mlops-local/redis`: stand-ins for
   apache/airflow, postgres and redis with the interfaces docker-compose.yaml uses
   (docker/local/*.Dockerfile).

Prints the variables that point docker-compose at them (AIRFLOW_IMAGE, POSTGRES_IMAGE,
REDIS_IMAGE). Images that exist are kept unless --force. Needs root, debootstrap and a
Docker engine; the test of the compose stack calls this module.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_DIR = ROOT / "docker" / "local"
DEBIAN_IMAGE = "mlops-local/debian:bookworm"
IMAGES = {
    "AIRFLOW_IMAGE": ("mlops-local/airflow-base:3.3", "airflow-base.Dockerfile"),
    "POSTGRES_IMAGE": ("mlops-local/postgres:bookworm", "postgres.Dockerfile"),
}
REDIS_IMAGE = "mlops-local/redis:bookworm"
DEBIAN_PACKAGES = [
    "python3.11",
    "python3.11-venv",
    "python3-distutils",
    "python3-lib2to3",
    "python3-pip-whl",
    "python3-setuptools-whl",
    "ca-certificates",
    "postgresql",
    "redis-server",
]
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False).returncode == 0


def build_debian_base(suite: str = "bookworm") -> float:
    """debootstrap a root filesystem and `docker import` it; returns the seconds it took."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlops-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                suite,
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            log_file = rootfs / "debootstrap" / "debootstrap.log"
            details = log_file.read_text()[-3000:] if log_file.exists() else ""
            raise RuntimeError(f"debootstrap failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}\n{details}")
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        (rootfs / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
        host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if host_bundle.exists():
            shutil.copy(host_bundle, rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["bash"]',
        ]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        argv = ["docker", "import"]
        for change in changes:
            argv += ["--change", change]
        subprocess.run([*argv, "-", DEBIAN_IMAGE], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise RuntimeError("tar of the root filesystem failed")
    return time.monotonic() - t0


def build_local_images(force: bool = False, log=print) -> dict[str, str]:
    """Build (or reuse) the local base images; returns {variable: image} for docker-compose."""
    if force or not image_exists(DEBIAN_IMAGE):
        log(f"[images] debootstrap + docker import -> {DEBIAN_IMAGE} ...")
        log(f"[images] {DEBIAN_IMAGE} built in {build_debian_base():.0f}s")
    for variable, (name, dockerfile) in IMAGES.items():
        if force or not image_exists(name):
            t0 = time.monotonic()
            subprocess.run(
                # On the host's network: pip reaches the package index as the host does.
                [
                    "docker",
                    "build",
                    "--network=host",
                    "-q",
                    "-t",
                    name,
                    "-f",
                    str(LOCAL_DIR / dockerfile),
                    str(LOCAL_DIR),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )
            log(f"[images] {variable}={name} built in {time.monotonic() - t0:.0f}s")
    # Debian's redis-server and redis-cli are on the base's PATH: the base is the Redis image.
    subprocess.run(["docker", "tag", DEBIAN_IMAGE, REDIS_IMAGE], check=True)
    return {**{variable: name for variable, (name, _) in IMAGES.items()}, "REDIS_IMAGE": REDIS_IMAGE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild images that exist")
    args = parser.parse_args(argv)
    images = build_local_images(force=args.force, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    for variable, name in images.items():
        print(f"{variable}={name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
