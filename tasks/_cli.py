"""What every task shares: errors become one line and an exit code; --debug shows tracebacks."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from invoke.exceptions import Exit

from cerniq_ops.errors import CerniqError
from cerniq_ops.output import redact


def cli(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a task body: a CerniqError prints `error: <message>` and exits with its code.

    Set CERNIQ_DEBUG=1 to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CerniqError as exc:
            if os.environ.get("CERNIQ_DEBUG"):
                raise
            raise Exit(f"error: {redact(str(exc))}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("error: interrupted", code=130) from None
        except Exit:
            raise
        except Exception as exc:  # a bug or a library's surprise: still one line, exit 1
            if os.environ.get("CERNIQ_DEBUG"):
                raise
            from cerniq_ops.procedure import describe_exception

            message = f"error: {redact(describe_exception(exc))} (CERNIQ_DEBUG=1 shows where)"
            raise Exit(message, code=1) from None

    return wrapper


def progress_for(json: bool) -> Callable[[str], None]:
    """Progress lines: stdout normally, stderr with --json (stdout is the JSON document)."""
    from cerniq_ops.output import say

    return (lambda line: say(line, err=True)) if json else say


def run_procedure(procedure: Callable[[Any], Any], ctx: Any, json: bool) -> Any:
    """Run PROCEDURE(ctx); with --json print its report (also when it fails) on stdout."""
    from cerniq_ops.output import emit_json

    try:
        report = procedure(ctx)
    except CerniqError:
        if json and getattr(ctx, "report", None) is not None:
            emit_json(ctx.report.to_dict())
        raise
    if json:
        emit_json(report.to_dict())
    return report
