"""Error types and the exit codes they map to.

Every error a user can cause is an ``AutotuneError`` carrying its exit code, so the CLI can
print one line and exit without a traceback. The codes are documented in the README.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected failure (a bug): traceback is shown
EXIT_BAD_INPUT = 2  # profile, flags, topology strings
EXIT_INFEASIBLE = 3  # nothing in the search space fits the cluster
EXIT_BACKEND = 4  # a backend (Dynamo, Kubernetes) failed or answered nonsense
EXIT_STORAGE = 5  # the study storage or the results directory could not be written (disk full, permissions)
EXIT_IMPROVEMENT_AVAILABLE = 10  # `autotune drift`: a better topology than the deployed one is available
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM (128 + 2); finished trials are kept


class AutotuneError(Exception):
    """Base class: a one-line message meant for the user, and an exit code."""

    exit_code: int = EXIT_FAILURE


class InputError(AutotuneError):
    """Bad user input; the message names the file, field or flag."""

    exit_code = EXIT_BAD_INPUT


class ProfileError(InputError):
    """A malformed or inconsistent profile: ``file: field.path: what is wrong``."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.detail = message
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


class InfeasibleError(AutotuneError):
    """No configuration in the search space fits the cluster."""

    exit_code = EXIT_INFEASIBLE


class BackendError(AutotuneError):
    """A trial backend could not deploy, measure or tear down."""

    exit_code = EXIT_BACKEND


class Interrupted(AutotuneError):
    """The user or the scheduler asked us to stop; finished work is already saved."""

    exit_code = EXIT_INTERRUPTED


class StorageError(AutotuneError):
    """The study or its results could not be written; what was saved before stays valid."""

    exit_code = EXIT_STORAGE
