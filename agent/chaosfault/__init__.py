"""chaosfault - the on-host fault agent of the chaos lab.

Runs on a lab host (a guest booted with systemd, or a VM; as root, over SSH) with nothing
but the standard library, shipped as one zipapp (`chaosfault.pyz`). Every fault has inject /
verify / heal; every fault is recorded in this host's state directory *before* it takes
effect, together with a watchdog process that reverts it after ttl + grace even if the
controller dies, or as soon as its lease runs out when the controller stops renewing it.
`heal` is idempotent and safe when nothing was injected; `heal --all` also sweeps
artifacts by their names (chains CHAOS-*, tc handle cafe:, cgroup subtree chaoslab/<host>, runtime
limits on chaoslab-* units).

Commands (argv form, or JSON lines on stdin with `serve` for the controller's fast path):
    inject '<json spec>'     {"kind": ..., "id": ..., "ttl_s": ..., "lease_s": ..., "params": {...}}
    plan '<json spec>'       what inject would do, changing nothing
    verify <id>              prove the fault is in effect (counters, states, rows)
    heal <id> | --all        undo (idempotent)
    renew <lease_s> <id>...  extend the leases of faults injected with lease_s
    list                     faults recorded on this host
    kinds                    every fault kind and its parameters
    capabilities             what this host's kernel and tools can do
    serve                    read one JSON request per line, answer one JSON line each
    artifacts                every lab fault artifact present (for heal-all checks)
    programs                 every program with a pidfile: pid, alive, rss_kb, active
    proc <program>           one program's {pid, rss_kb} (pid null: not running)

Layout: `agent` (records, inject / heal, watchdog), `validation`, `artifacts`, `cli`,
shared helpers (`processes`, `programs`, `services`, `iptables`, `tc`, `cgroups`,
`capabilities`) and one module per fault family under `kinds/`, each with its faults and
the artifacts they can leave.
"""
