"""Start, stop and inspect the stack: SeaweedFS (S3), an MLflow server and Airflow.

    python scripts/stack [--topology standalone|celery] up | down | status | env

See the package's docstring (scripts/stack/__init__.py) for the two topologies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

import stack
from stack.settings import TOPOLOGIES, Settings
from stack.topology import ConfigMismatch, down, status, up, use_stack_config


def main(argv: list[str] | None = None) -> int:
    """The CLI: up, down, status (exit 1 when a service is down), env (settings without secrets, as
    JSON); exit code 2 when `up` refuses another configuration."""
    parser = argparse.ArgumentParser(description=stack.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--topology", choices=TOPOLOGIES, default=os.environ.get("MLOPS_TOPOLOGY", "standalone"))
    args = parser.parse_args(argv)
    settings = Settings.from_env(topology=args.topology)
    if args.command == "up":
        try:
            config = use_stack_config(settings)
        except ConfigMismatch as exc:
            print(f"[stack] refusing to start: {exc}", file=sys.stderr, flush=True)
            return 2
        print(f"[stack] configuration {config}", flush=True)
        up(settings)
    elif args.command == "down":
        down(settings)
    elif args.command == "status":
        return status(settings)
    else:
        print(json.dumps({k: str(v) for k, v in asdict(settings).items() if not _is_secret(k)}))
    return 0


def _is_secret(name: str) -> bool:
    return any(word in name for word in ("secret", "password"))


if __name__ == "__main__":
    sys.exit(main())
