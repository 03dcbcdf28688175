"""Which Ray to use, decided without Ray: join a cluster only when one is named, else start a local one.

    --ray-address / ray_address in the config   join that cluster ("auto": the one `ray start` started here)
    RAY_ADDRESS                                  join that cluster (also how `ray job submit` jobs run)
    neither                                      start a private local Ray, even when `ray start` left a
                                                 cluster (or only its address file) on this machine

A named `host:port` is probed with a plain TCP connect first, bounded by `timeout_s`, so a dead
address fails in seconds with one line instead of Ray's 60 s wait for its GCS. The adapter
(`ray_backend.connect_ray`) does the connecting.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import JobFailed

CONNECT_TIMEOUT_S = 10.0  # TCP probe of a named address, and Ray's own GCS connect timeout


@dataclass(frozen=True)
class RayTarget:
    """address None: start a local Ray. `origin` names where the address came from, for messages."""

    address: str | None
    origin: str

    @property
    def local(self) -> bool:
        return self.address is None


def choose_target(explicit: str | None = None, env: Mapping[str, str] | None = None) -> RayTarget:
    """The Ray to use: `explicit` (--ray-address or the config's ray_address), then RAY_ADDRESS, else local."""
    env = os.environ if env is None else env
    if explicit:
        return RayTarget(str(explicit).strip(), "--ray-address / ray_address")
    if env.get("RAY_ADDRESS", "").strip():
        return RayTarget(env["RAY_ADDRESS"].strip(), "RAY_ADDRESS")
    return RayTarget(None, "local")


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` or `ray://host:port`; None for forms Ray resolves itself ("auto", http://)."""
    text = address.removeprefix("ray://")
    if "://" in text or ":" not in text:
        return None
    host, _, port = text.rpartition(":")
    return (host.strip("[]") or "127.0.0.1", int(port)) if port.isdigit() else None


def probe(target: RayTarget, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """JobFailed in at most `timeout_s` when a named host:port does not accept a TCP connection."""
    where = target.address and host_port(target.address)
    if not where:
        return
    try:
        with socket.create_connection(where, timeout=timeout_s):
            pass
    except OSError as exc:
        raise JobFailed(f"cannot reach the Ray cluster at {target.address} (from {target.origin}) within "
                        f"{timeout_s:g} s: {exc}; start it, fix the address, or unset it to run on a local "
                        f"Ray") from exc
