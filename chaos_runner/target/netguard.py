"""The network rule, enforced in code: traffic only to loopback or to lab hosts.

A lab address (198.18.0.0/24 by default) is only accepted while the kernel routes it
to the lab bridge; otherwise a packet could leave the machine, which is forbidden.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos_runner.errors import AddressRefused

DEFAULT_LAB_NETWORK = ipaddress.ip_network("198.18.0.0/24")
DEFAULT_BRIDGE = "labbr0"


@dataclass(frozen=True)
class NetworkGuard:
    lab_network: ipaddress.IPv4Network | ipaddress.IPv6Network = DEFAULT_LAB_NETWORK
    bridge: str = DEFAULT_BRIDGE
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
            raise AddressRefused(
                f"refusing traffic to {host}: not loopback and not in the lab network "
                f"{self.lab_network}"
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
    proc = subprocess.run(
        ["ip", "-j", "route", "get", address], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return None
    routes = json.loads(proc.stdout or "[]")
    return routes[0].get("dev") if routes else None
