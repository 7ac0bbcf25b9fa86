"""Free loopback ports for tests and benchmarks, picked below the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from stack.settings import HOST


def port_is_free(port: int) -> bool:
    """Whether a TCP port on loopback can be bound now."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# Tests and benchmarks pick their ports at start and use them minutes later. Picked from the
# kernel's ephemeral range, a port could meanwhile become the local end of any outgoing
# connection (a SeaweedFS start failed so: "port ... is not available"), so they are picked
# below it, away from the stack's default ports, and never handed out twice.
_PICK_RANGE = (10000, 19000)
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _hand_out(ports: list[int]) -> bool:
    if _handed_out.intersection(ports) or max(ports) >= _ephemeral_low() or not all(map(port_is_free, ports)):
        return False
    _handed_out.update(ports)
    return True


def free_port() -> int:
    """A loopback port free now, below the ephemeral range, not handed out before here."""
    for _ in range(500):
        port = random.randrange(*_PICK_RANGE)
        if _hand_out([port]):
            return port
    raise RuntimeError(f"no free port in {_PICK_RANGE}")


def free_weed_base() -> int:
    """A base port for SeaweedFS: base..base+11 and base+10010 free (see Settings.weed_base_port)."""
    for _ in range(500):
        base = random.randrange(_PICK_RANGE[0], _PICK_RANGE[1] - 12)
        if _hand_out([*range(base, base + 12), base + 10010]):
            return base
    raise RuntimeError("no free port range for SeaweedFS")
