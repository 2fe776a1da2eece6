"""The embedded lab's defaults, the one place the runner names them.

Every other module takes these from here; a cluster inventory (or `--state-dir`,
`CHAOSLAB_STATE_DIR`, `--inventory`) replaces each. Host names never appear: the runner
knows hosts only from the inventory and the records the playbooks write.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

# The embedded lab's network and bridge (inventory: lab_subnet, lab_bridge).
LAB_NETWORK = ipaddress.ip_network("198.18.0.0/24")
LAB_BRIDGE = "labbr0"
# Controller state: keys, PKI, secrets, the playbooks' records (inventory: lab_state_dir).
STATE_DIR = Path("/var/lib/chaoslab")
# The embedded lab's inventory, relative to the repository.
INVENTORY = Path("inventory") / "lab"
