"""The network rule, enforced in code: traffic only to loopback or to lab hosts.

A lab address (in the inventory's lab_subnet) is only accepted while the kernel routes it
to the lab bridge; otherwise a packet could leave the machine, which is forbidden. An
address outside the lab network is accepted only for an inventory host marked
`chaos_lab_allowed: true` (a cluster VM: its operator allowed the tooling on it).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos_runner.errors import AddressRefused
from chaos_runner.target.defaults import LAB_BRIDGE, LAB_NETWORK


@dataclass(frozen=True)
class NetworkGuard:
    lab_network: ipaddress.IPv4Network | ipaddress.IPv6Network = LAB_NETWORK
    bridge: str = LAB_BRIDGE
    # Addresses of inventory hosts marked chaos_lab_allowed: true, outside the lab network.
    allowed: frozenset[str] = frozenset()
    # Asks the kernel which device a packet would leave through (replaceable in unit tests).
    route_lookup: Callable[[str], str | None] = field(
        default=lambda a: route_device(a), compare=False
    )

    def check(self, host: str) -> str:
        """Return the address if traffic to it is allowed, else raise AddressRefused."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host == "localhost":
                return host
            raise AddressRefused(
                f"refusing traffic to {host!r}: only IP addresses of the lab network "
                f"{self.lab_network} or loopback are allowed (names are not resolved)"
            ) from None
        if address.is_loopback:
            return host
        if address not in self.lab_network:
            if host in self.allowed:
                return host
            raise AddressRefused(
                f"refusing traffic to {host}: not loopback, not in the lab network "
                f"{self.lab_network} and no inventory host at it is marked chaos_lab_allowed: true"
            )
        device = self.route_lookup(host)
        if device != self.bridge:
            raise AddressRefused(
                f"refusing traffic to {host}: the kernel routes it via {device or 'nothing'}, "
                f"not the lab bridge {self.bridge} - is the lab up? (chaoslab lab up)"
            )
        return host


def route_device(address: str) -> str | None:
    """The interface the kernel would send a packet to `address` through, or None."""
    return _route(address).get("dev")


def route_source(address: str) -> str | None:
    """The source address the kernel would send a packet to `address` from, or None."""
    return _route(address).get("prefsrc")


def _route(address: str) -> dict[str, str]:
    proc = subprocess.run(
        ["ip", "-j", "route", "get", address], capture_output=True, text=True, check=False
    )
    routes = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    return routes[0] if routes else {}
