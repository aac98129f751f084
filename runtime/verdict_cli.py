"""The --operating-point option, one definition for predict, serve and watch."""

from __future__ import annotations

import click

operating_point_option = click.option(
    "--operating-point", default=None, metavar="NAME",
    help="Decide at this named operating point of the package (`fakedet info` lists them).")
