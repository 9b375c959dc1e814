"""What the three command lines share: user mistakes become one line on stderr."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from hashsdk.errors import HashsdkError


def user_errors(extra: str | None = None) -> Callable[[Callable], Callable]:
    """Turns HashsdkError and OSError into a clean ``Error: ...`` exit, without a traceback.

    extra: the pip extra a command needs; a missing import then says how to install it.
    """
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ImportError as exc:
                if extra is None:
                    raise
                raise click.ClickException(f"{exc}; install the {extra} extra: "
                                           f"pip install 'hashsdk[{extra}]'") from None
            except (HashsdkError, OSError) as exc:
                raise click.ClickException(str(exc)) from None
        return wrapper
    return wrap
