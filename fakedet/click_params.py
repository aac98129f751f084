"""Click option callbacks that turn a parser's error into click's usage error (exit 2,
the option named)."""

from __future__ import annotations

import click


def parsed_by(parse, *errors: type[Exception]):
    """A click callback: `parse(value)`, its `errors` (default ValueError) reported as a bad
    value of the option."""
    errors = errors or (ValueError,)

    def callback(ctx, param, value):
        try:
            return parse(value)
        except errors as e:
            raise click.BadParameter(str(e)) from None

    return callback
