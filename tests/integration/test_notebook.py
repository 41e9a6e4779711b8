"""The quickstart notebook (docs/notebooks/quickstart.ipynb) runs top to bottom in a fresh kernel with
this checkout's sinkfix and a temporary database, imports no Streamlit, and every chart it draws is an
Altair chart whose spec validates against the Vega-Lite schema. A cell that raises fails the test."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "run.py"
# First cell: any `import streamlit` in the kernel now raises ImportError, so the notebook path cannot use it.
PRELUDE = 'import sys\nsys.modules["streamlit"] = None'
# Last cell: every chart a cell returned, validated (to_dict validates against the schema).
POSTLUDE = """import altair as alt
charts = [value for value in Out.values() if isinstance(value, alt.TopLevelMixin)]
for chart in charts:
    chart.to_dict(validate=True)
print(f"{len(charts)} charts valid; streamlit: {sys.modules['streamlit']}")"""


CHARTS = 6  # received, heads, map, the evaluation's sweep and forest, the sink-rate bars


def _runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_quickstart_notebook_runs_without_streamlit_and_its_charts_validate(tmp_path: Path) -> None:
    runner = _runner()
    notebook = runner.execute(runner.QUICKSTART, tmp_path / "sinkfix.db", PRELUDE, POSTLUDE)
    outputs = [o for cell in notebook.cells[1:-1] if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = [o.data for o in outputs if o.output_type == "execute_result"]
    assert sum('class="sinkfix-analysis"' in d.get("text/html", "") for d in kinds) == 2  # analyze, Store.get
    assert sum('class="sinkfix-stored"' in d.get("text/html", "") for d in kinds) == 2  # evaluation, experiment
    assert (tmp_path / "sinkfix.db").exists()  # the notebook's store is the temporary one
    assert notebook.cells[-1].outputs[0].text.strip() == f"{CHARTS} charts valid; streamlit: None"
