"""How every short-lived process that may open a Temporal client ends: `run_main(main)`.

The Temporal SDK runs its client on Rust (Tokio) threads that Python does not know about. If
one of them touches the interpreter while it is being torn down, the process dies *after* it
did its work: `Fatal Python error: PyGILState_Release ... finalizing` (exit 134) or a segfault
(139). This is sdk-python issue #300; closing the client does not help (the runtime threads
stay), and the SDK has no call that stops them. Measured here before this module: `starter.py
status ID --json` died in 5 of 90 runs, the compose health check (`python -m
devstack.healthcheck worker`) in 10 of 40, each after printing a correct result.

So these processes never reach interpreter teardown: once `main` has returned (its `with`
blocks closed, its files written, its servers stopped), `leave` flushes logging, stdout and
stderr and ends the process with `os._exit`. The exit status is the one `main` meant: its
return value, or `sys.exit`'s argument, or 1 with the traceback printed for an exception, just
as Python itself would report them. What is skipped is only what teardown would do after that:
`atexit` handlers and joining non-daemon threads, so entry points release what they hold in
`main` itself (they do: everything is a context manager).

pytest ends the same way (tests/conftest.py): `leave_at_exit` registers an `atexit` handler
that leaves with the session's status once pytest has printed its summary and cleaned up.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

# What Python exits with when flushing stdout fails at exit (say a closed pipe).
FLUSH_FAILED = 120
# What a shell reports for a process ended by SIGINT (Ctrl-C).
INTERRUPTED = 130


def leave(code: int) -> NoReturn:
    """Flushes logging, stdout and stderr, then ends the process with `code` at once."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            # Output was lost (closed pipe, full disk): never report success for that.
            code = code or FLUSH_FAILED
    os._exit(code)


def exit_code(exc: SystemExit) -> int:
    """The status Python gives `sys.exit(arg)`: None is 0, an int is itself, anything else is
    printed to stderr and is 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Runs an entry point and leaves with its status (see the module docstring)."""
    try:
        code = main() or 0
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = INTERRUPTED if isinstance(exc, KeyboardInterrupt) else 1
    leave(code)


def leave_at_exit(status: Callable[[], int | None]) -> None:
    """At interpreter exit, after the handlers registered later than this one have run, leave
    with `status()`; if it is None, let Python tear down as usual."""

    def handler() -> None:
        code = status()
        if code is not None:
            leave(code)

    atexit.register(handler)
