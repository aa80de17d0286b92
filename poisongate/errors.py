"""The exceptions users see: one line naming the file, the place and the fix."""


class PoisongateError(Exception):
    """A mistake a user (or an attacker's file) can cause. The CLI prints it as one line, exit status 1."""

    exit_status = 1


class ConfigError(PoisongateError):
    """params.yaml (or a run option) holds a value it cannot: refused before any stage runs, exit status 2."""

    exit_status = 2


class GateRefused(PoisongateError):
    """A gate said no: the flow ends Failed with this one-line reason."""
