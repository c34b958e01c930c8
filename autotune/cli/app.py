"""The ``autotune`` group and its entry point: every command is registered here, explicitly.

Errors a user can cause print one line on stderr and exit with a documented code (README):
0 ok, 2 bad input, 3 no feasible configuration, 4 backend failure, 130 interrupted.
"""

from __future__ import annotations

import errno
import logging
import signal
import sys
from typing import Any

import click

from autotune import __version__
from autotune.cli.calibrate import calibrate_cmd
from autotune.cli.control import control_cmd
from autotune.cli.drift import drift_cmd
from autotune.cli.k8s import cleanup_cmd, dgd_cmd
from autotune.cli.run import plan, report, run
from autotune.cli.simulate import simulate
from autotune.cli.trace import trace_cmd
from autotune.cli.validate import validate_cmd
from autotune.cli.worker import worker_cmd
from autotune.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_STORAGE, AutotuneError
from autotune.redact import install_log_filter, redact_text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autotune")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Cluster autotuner for NVIDIA Dynamo disaggregated LLM serving."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    install_log_filter()  # no credential reaches the log, whoever logs it
    for noisy in ("optuna", "matplotlib", "kubernetes", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


cli.add_command(run)
cli.add_command(plan)
cli.add_command(report)
cli.add_command(simulate)
cli.add_command(validate_cmd)
cli.add_command(calibrate_cmd)
cli.add_command(cleanup_cmd)
cli.add_command(dgd_cmd)
cli.add_command(worker_cmd)
cli.add_command(trace_cmd)
cli.add_command(drift_cmd)
cli.add_command(control_cmd)


_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _sigterm_is_interrupt() -> None:
    """A CronJob's SIGTERM behaves like Ctrl-C in every phase (study, controller, results): exit 130."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave the host's handler alone
        pass


# click >= 8.2 raises this (a UsageError) for a group called without arguments; older click prints the help
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> None:
    """Entry point: map errors to exit codes, never a traceback for user errors."""
    _sigterm_is_interrupt()
    try:
        cli.main(args=argv, prog_name="autotune", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("autotune: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except _NO_ARGS_IS_HELP as exc:  # bare ``autotune``: the help, as click shows it
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except click.ClickException as exc:
        # one line, as for every other error: click's own form adds a "Usage:" line and a "Try --help" hint
        message = " ".join(exc.format_message().split())
        click.echo(f"autotune: error: {message}", err=True)
        sys.exit(exc.exit_code if not isinstance(exc, click.UsageError) else EXIT_BAD_INPUT)
    except AutotuneError as exc:
        click.echo(f"autotune: error: {redact_text(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("autotune: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:  # disk full, read-only file system, permissions: the environment, not a bug
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"autotune: error: cannot write{where}: {exc.strerror}; finished trials are saved", err=True)
        sys.exit(EXIT_STORAGE)
    sys.exit(0)
