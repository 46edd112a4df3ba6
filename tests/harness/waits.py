"""Bounded waits that say what they waited for when they give up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message names what was awaited and the last thing seen."""


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout: float = 60,
    interval: float = 0.5,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy, for at most ``timeout`` seconds.

    Exceptions raised by ``check`` count as "not yet"; the last one is reported, and so is what
    ``describe`` says then (the state of each part involved), when given.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = ""
            if describe is not None:
                try:
                    detail = f"; {describe()}"
                except Exception as exc:  # the report must not hide the timeout
                    detail = f"; (describing the state failed: {exc!r})"
            raise WaitTimeout(f"gave up after {timeout:.0f} s waiting for {what}; last seen: {last!r}{detail}")
        time.sleep(interval)
