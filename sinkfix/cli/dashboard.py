"""``sinkfix dashboard``: start the Streamlit app, from a clone or from an installed wheel.

It runs ``python -m streamlit run`` on the dashboard's Home.py, in place of this process (the core
never imports Streamlit) with the dashboard's Streamlit settings passed as flags, so they apply from any
working folder, not only from the repository root where ``.streamlit/config.toml`` sits.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from sinkfix import paths
from sinkfix.errors import SinkFixError
from sinkfix.policy import signin


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("dashboard", help="open the dashboard (Streamlit) in the browser")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.set_defaults(handler=run_dashboard)


def config_flags(config: Path) -> list[str]:
    """``--section.option value`` for every setting in a Streamlit config.toml (flags win over files)."""
    if not config.is_file():
        return []
    flags: list[str] = []

    def add(prefix: str, table: dict) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                add(f"{prefix}{key}.", value)
            else:
                for item in value if isinstance(value, list) else [value]:
                    text = str(item).lower() if isinstance(item, bool) else str(item)
                    flags.extend([f"--{prefix}{key}", text])

    add("", tomllib.loads(config.read_text(encoding="utf-8")))
    return flags


def streamlit_command(host: str, port: int) -> list[str]:
    script = paths.dashboard_script()
    return [sys.executable, "-m", "streamlit", "run", str(script), *config_flags(paths.streamlit_config()),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true"]


def run_dashboard(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise SinkFixError("the dashboard needs Streamlit: pip install 'sinkfix[dashboard]'")
    if not 0 < args.port < 65536:
        raise SinkFixError(f"--port must be between 1 and 65535, got {args.port}")
    # Beyond loopback, visitors must sign in: refuse before anything listens (docs/security.md). The
    # secrets are the ones the child `streamlit run` will read (this folder's, the user's, the app's).
    sign_in = signin.SignIn.from_secrets(signin.read_secrets(Path.cwd(), paths.dashboard_script()))
    signin.check_shared_start(args.host, sign_in)
    print(f"sinkfix: dashboard on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    command = streamlit_command(args.host, args.port)
    if os.name == "posix":
        # Become Streamlit, so Ctrl-C and a service manager's SIGTERM reach the server itself and
        # no orphan is left behind when this process is stopped.
        sys.stdout.flush()
        os.execv(command[0], command)
    return subprocess.call(command)
