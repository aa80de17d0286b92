"""The exceptions users see: one line naming the file, the place and the fix."""
import errno
import logging
import os
import re

# A damaged champion checkpoint or pointer: the registry is DVC-tracked, so its last recorded state comes back whole.
REPAIR_REGISTRY = ("restore the registry as last recorded with `dvc checkout registry` (checked against its DVC "
                   "hash), or go back further with `poisongate rollback`")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """Control characters shown escaped (a newline in a file name is `\\n`): the message stays one line."""
    return CONTROL.sub(lambda m: repr(m[0])[1:-1], text)


class PoisongateError(Exception):
    """A mistake a user (or an attacker's file) can cause. The CLI prints it as one line, exit status 1."""

    exit_status = 1

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(str(message)))


class RegistryDamaged(PoisongateError):
    """A champion checkpoint or pointer that cannot be read: the run must not version the registry as it is now,
    so that `dvc checkout registry` brings back the last good one."""


class ConfigError(PoisongateError):
    """params.yaml (or a run option) holds a value it cannot: refused before any stage runs, exit status 2."""

    exit_status = 2


class GateRefused(PoisongateError):
    """A gate said no: the flow ends Failed with this one-line reason."""


# The machine's faults a user fixes: a full disk, a read-only or unwritable workspace.
WRITABLE = "make the workspace writable by this user"
MACHINE_FIXES = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk quota",
                 errno.EROFS: "mount the workspace read-write", errno.EACCES: WRITABLE, errno.EPERM: WRITABLE}


def machine_error(exc: BaseException | None) -> str | None:
    """One line for a full disk or an unwritable workspace anywhere in the exception's chain (Orbax, DVC and
    tensorstore wrap them, some only in their message), or None for anything else."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in MACHINE_FIXES:
            where = exc.filename or "the workspace"
            return one_line(f"{where}: {exc.strerror}; {MACHINE_FIXES[exc.errno]}, then run again")
        for code, fix in MACHINE_FIXES.items():
            if os.strerror(code) in str(exc):
                return one_line(f"{os.strerror(code)} ({str(exc)[:160]}); {fix}, then run again")
        exc = exc.__cause__ or exc.__context__
    return None


class HideUserTracebacks(logging.Filter):
    """Prefect logs a failed flow or task with its traceback. A user's error or the machine's fault is one line
    (the CLI prints it); programming errors keep their traceback. Installed by the CLI unless --debug; `quiet`
    (no --verbose) drops such records whole: the console's stage lines and the CLI's line already say it."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__()
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PoisongateError) or machine_error(exc):
            record.exc_info, record.exc_text = None, None
            return not self.quiet
        return True
