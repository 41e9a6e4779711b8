"""The command line: one module per command group, registered in ``sinkfix.cli.main``."""
from sinkfix.cli.main import main  # noqa: F401
