"""The runner's error tree. The CLI maps ChaosRunnerError subclasses to exit code 2."""

from __future__ import annotations


class ChaosRunnerError(Exception):
    """Base of every error the runner raises on purpose."""


class ConfigError(ChaosRunnerError):
    """A configuration, inventory or scenario input is wrong (names what and where)."""


class LabNotReady(ChaosRunnerError):
    """The lab is not (fully) up: traffic and faults are refused until it is."""


class AddressRefused(ChaosRunnerError):
    """A target address is outside the lab network or not routed to the lab bridge."""


class PlaybookFailed(ChaosRunnerError):
    """An Ansible playbook run failed; carries the failing hosts and task messages."""

    def __init__(self, playbook: str, rc: int, failures: list[str], artifacts: str | None) -> None:
        self.playbook = playbook
        self.rc = rc
        self.failures = failures
        self.artifacts = artifacts
        detail = "\n".join(f"  - {line}" for line in failures) or "  (no task failure recorded)"
        where = f"\n  artifacts: {artifacts}" if artifacts else ""
        super().__init__(f"playbook {playbook} failed (rc={rc}):\n{detail}{where}")


class FaultError(ChaosRunnerError):
    """A fault could not be injected, verified or healed."""


class LoadError(ChaosRunnerError):
    """The load driver could not run as asked."""
