"""`bilan view`: a local web app over run directories (grid, case pages, labelling); see app.create_app.

This file only declares the command's options (argparse), so that `bilan` starts without importing Flask.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable


def add_arguments(subparsers: argparse._SubParsersAction, command: Callable) -> None:
    """Add `bilan view RUN [RUN ...] [--host ADDR --passphrase-env VAR] [--port N]`, run by `command`."""
    parser = subparsers.add_parser("view", help="read runs and label verdicts in the browser (a local web app)")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run directories written by `bilan run` (read, never changed)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1; any other "
                        "needs --passphrase-env)")
    parser.add_argument("--port", type=int, default=0, help="the port (default: a free one)")
    parser.add_argument("--passphrase-env", metavar="VAR", help="the environment variable holding the passphrase "
                        "every reader must give first (required with a --host other than loopback)")
    parser.set_defaults(func=command)
