"""The errors supervise shows to people.

    SupervisorError          exit 1; str(e) is the whole user-facing line
     ├── UsageError          exit 2; a bad command-line flag or argument
     ├── ConfigError         exit 2; a bad stack file, naming the file and the key path
     ├── ContainerError      exit 125 by default (Docker's "supervise failed to start it");
     │                        names the container and what failed; feeds the restart logic
     ├── ApiError            exit 1; the supervisor answered a request with an error
     │                        (.status is the HTTP status, str(e) the server's message)
     └── NoSupervisor        exit 1; nothing answers on the project's control socket

Grammar of a message: ``<where>: <what>[, expected X, got Y]``.  Foreign exceptions are
translated once, at the adapter, with ``raise ... from exc``.
"""

from __future__ import annotations


class SupervisorError(Exception):
    """Root of every error supervise shows to a user."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return str(self.args[0])


class UsageError(SupervisorError):
    """A command-line flag or argument is wrong."""

    exit_code = 2


class ConfigError(SupervisorError):
    """A stack file (or its .env / env_file) is wrong."""

    exit_code = 2


class ContainerError(SupervisorError):
    """A container could not be created, started, stopped or removed."""

    exit_code = 125

    def __init__(self, container: str, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(f"{container}: {message}", exit_code=exit_code)
        self.container = container


class CgroupError(SupervisorError):
    """A cgroup operation failed; names the cgroup and the control file.

    Not a ContainerError: the driver also fails outside any container (at start, in the
    leftover scan), so the container engine wraps it where a container is concerned.
    ``errno`` keeps the kernel's answer (EBUSY, EINVAL…) for callers that branch on it.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class ApiError(SupervisorError):
    """The control API answered with an error; ``str(e)`` is the server's message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NoSupervisor(SupervisorError):
    """No supervisor answers on the control socket (missing or refusing); a one-line hint."""
