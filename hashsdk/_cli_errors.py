"""What the three command lines share: ``-h`` beside ``--help``, ``--version``, and user
mistakes as one line on stderr."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import click

from hashsdk.errors import HashsdkError

# every command and sub-command of the three CLIs: -h and --help, and each option's default
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


def version_option() -> Callable:
    """``--version``: hashsdk's one version (``hashsdk.__version__``, which the package
    metadata also reads), the same whether hashsdk or hashsdk-gpu is installed."""
    from hashsdk import __version__

    return click.version_option(__version__, message="hashsdk %(version)s")


def _stdout_to_devnull() -> None:
    # Python flushes stdout at exit, which would raise on the closed pipe again
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def user_errors(extra: str | None = None) -> Callable[[Callable], Callable]:
    """Turns HashsdkError and OSError into a clean ``Error: ...`` exit, without a traceback.

    extra: the pip extra a command needs; a missing import then says how to install it.
    """
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except BrokenPipeError:  # the reader left (`hashsdk-train backbones | head`)
                _stdout_to_devnull()
                sys.exit(0)
            except ImportError as exc:
                if extra is None:
                    raise
                raise click.ClickException(f"{exc}; install the {extra} extra: "
                                           f"pip install '.[{extra}]' in a checkout of hashsdk (or "
                                           f"the wheel with [{extra}])") from None
            except (HashsdkError, OSError) as exc:
                raise click.ClickException(str(exc)) from None
        return wrapper
    return wrap
