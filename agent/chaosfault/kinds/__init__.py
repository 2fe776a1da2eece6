"""The fault families, one module each; the registries are assembled from their
declarations, in the order heal-all sweeps their artifacts."""

from __future__ import annotations

from chaosfault.fault import Artifact, Family, Fault, Worker
from chaosfault.kinds import cache, jwks, net, pg, proc, res

# Sweep order matters: rules and qdiscs first, stopped programs resumed and the agent's
# helpers ended before cgroups are emptied and PostgreSQL sessions ended.
FAMILIES: tuple[Family, ...] = (
    net.FAMILY,
    proc.FAMILY,
    res.FAMILY,
    pg.FAMILY,
    jwks.FAMILY,
    cache.FAMILY,
)


def _merge_faults() -> dict[str, Fault]:
    faults: dict[str, Fault] = {}
    for family in FAMILIES:
        for kind, fault in family.faults.items():
            if kind in faults or not kind.startswith(f"{family.name}."):
                raise RuntimeError(f"fault kind {kind!r} of family {family.name} clashes")
            faults[kind] = fault
    return faults


FAULTS: dict[str, Fault] = _merge_faults()
ARTIFACTS: tuple[Artifact, ...] = tuple(a for family in FAMILIES for a in family.artifacts)
WORKERS: dict[str, Worker] = {
    name: worker for family in FAMILIES for name, worker in family.workers.items()
}
