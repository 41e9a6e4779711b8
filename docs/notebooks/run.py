"""Execute the documentation notebooks with nbclient, the way the test suite and the docs do.

    .venv/bin/python docs/notebooks/run.py            # re-run quickstart.ipynb, keep its outputs (the docs show them;
                                                      # warnings written to stderr are dropped: they name local paths)
    .venv/bin/python docs/notebooks/run.py --check    # run it, write nothing back

The kernel imports this checkout's ``sinkfix`` (the repository root goes first on PYTHONPATH) and
writes to a temporary database (``SINKFIX_DB``), so a run never touches ``cache/sinkfix.db``.
``tests/integration/test_notebook.py`` calls ``execute`` with a prelude that makes any Streamlit
import fail and a last cell that validates every chart the notebook drew.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
QUICKSTART = HERE / "quickstart.ipynb"


def execute(path: Path, database: Path, prelude: str = "", postlude: str = "",
            timeout: int = 300) -> nbformat.NotebookNode:
    """Run every cell of ``path`` in a fresh kernel and return the notebook with its outputs; a cell
    that raises stops the run with nbclient's CellExecutionError. ``prelude`` and ``postlude``, when
    given, are code cells added first and last (the returned notebook has them, with their outputs)."""
    notebook = nbformat.read(path, as_version=4)
    if prelude:
        notebook.cells.insert(0, nbformat.v4.new_code_cell(prelude))
    if postlude:
        notebook.cells.append(nbformat.v4.new_code_cell(postlude))
    env = {**os.environ, "SINKFIX_DB": str(database), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}})
    client.execute(env=env)
    return notebook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the notebook, write nothing back")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        notebook = execute(QUICKSTART, Path(scratch) / "sinkfix.db")
    if not args.check:
        for cell in notebook.cells:  # warnings on stderr (tqdm's about ipywidgets) name this machine's paths
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
        nbformat.write(notebook, QUICKSTART)
        print(f"wrote {QUICKSTART.relative_to(REPO)} with its outputs")


if __name__ == "__main__":
    main()
