"""The one exception type for invalid arguments.

Every argument check in the package raises :class:`ArgumentError`, with the argument's name and the bad value in
the message (``"`lr` must be a number > 0, got -1"``). It is both a ``ValueError`` and a ``TypeError``, so code
that catches either keeps working, and it is what :class:`~lightning_bestpractices.cli.BestPracticesCLI` reports
as a configuration error (exit code 2): any other exception raised while the recipe's classes are built is a bug
and surfaces with its traceback.

Examples:
    >>> try:
    ...     raise ArgumentError("`lr` must be a number > 0, got -1")
    ... except ValueError as err:
    ...     print(err)
    `lr` must be a number > 0, got -1
"""

from __future__ import annotations

__all__ = ["ArgumentError"]


class ArgumentError(ValueError, TypeError):
    """An argument has a value (or type) that the practice cannot work with; the message names both."""
