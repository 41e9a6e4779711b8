"""mkdocs hook: every notebook under docs/notebooks/ becomes a page that shows it with its outputs.

The notebook is stored with the outputs of its last run (``docs/notebooks/run.py`` re-runs it; the
test suite runs it too). This hook turns it into Markdown at build time: Markdown cells as they are,
code cells as Python blocks, and each output as a reader would see it in Jupyter. Altair charts are
drawn as static SVG with vl-convert (the viz extra), so the page needs no JavaScript and no CDN; HTML
outputs (SinkFix's summaries, pandas tables) go in as they are; printed text as a text block. Warnings
a cell wrote to stderr (e.g. tqdm's notice about ipywidgets) are left out. A cell that failed, or a
chart that cannot be drawn, is a warning, so ``mkdocs build --strict`` fails on it. The .ipynb file is
published beside the page for download.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import vl_convert
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.plugins.notebooks")
FOLDER = "notebooks"
ALTAIR_CALL = "})({"  # Altair's HTML output ends with the embed call: (function(spec, embedOpt){...})(SPEC, OPTIONS)


def altair_spec(html: str) -> dict | None:
    """The Vega-Lite spec inside an Altair chart's HTML output, or None when it is not one."""
    if "vega-embed" not in html or ALTAIR_CALL not in html:
        return None
    spec, _ = json.JSONDecoder().raw_decode(html, html.rindex(ALTAIR_CALL) + len(ALTAIR_CALL) - 1)
    return spec


def _text(value: str | list[str]) -> str:
    """A notebook's multi-line string: one string, or a list of lines."""
    return value if isinstance(value, str) else "".join(value)


def _output(output: dict, where: str) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return f"```text\n{_text(output['text']).rstrip()}\n```" if output.get("name") == "stdout" else ""
    if kind == "error":
        log.warning(f"{where}: the stored output is an error ({output.get('ename')}: {output.get('evalue')}); "
                    "run docs/notebooks/run.py")
        return ""
    data = {mime: _text(value) if mime.startswith("text/") or mime == "image/svg+xml" else value
            for mime, value in output.get("data", {}).items()}
    html = data.get("text/html")
    if html is not None:
        spec = altair_spec(html)
        if spec is None:
            return f'<div class="notebook-output">\n{html.strip()}\n</div>'
        try:
            return f'<div class="notebook-chart">{vl_convert.vegalite_to_svg(spec)}</div>'
        except Exception as error:  # noqa: BLE001 (vl-convert raises plain ValueErrors)
            log.warning(f"{where}: an Altair chart could not be drawn: {error}")
            return ""
    if "image/svg+xml" in data:
        return f'<div class="notebook-chart">{data["image/svg+xml"]}</div>'
    if "image/png" in data:
        return f'<img alt="output" src="data:image/png;base64,{data["image/png"]}">'
    text = data.get("text/plain")
    return f"```text\n{text.rstrip()}\n```" if text else ""


def to_markdown(path: Path) -> str:
    """The notebook as a Markdown page, outputs included, with a link to download it."""
    notebook = json.loads(path.read_text(encoding="utf-8"))  # nbformat 4: plain JSON
    parts = []
    for index, cell in enumerate(notebook["cells"]):
        source = _text(cell["source"])
        if cell["cell_type"] == "markdown":
            parts.append(source)
        elif cell["cell_type"] == "code":
            parts.append(f"```python\n{source}\n```")
            parts += [shown for output in cell.get("outputs", []) if (shown := _output(output, f"{path.name}, cell {index}"))]
    parts.append(f"[Download this notebook]({path.name}) and run it with Jupyter, JupyterLab or VS Code.")
    return "\n\n".join(parts) + "\n"


def on_files(files, config):  # noqa: ANN001 (mkdocs' hook signature)
    """Add a generated ``notebooks/NAME.md`` for every ``notebooks/NAME.ipynb``."""
    for notebook in sorted((Path(config["docs_dir"]) / FOLDER).glob("*.ipynb")):
        page = f"{FOLDER}/{notebook.stem}.md"
        files.append(File.generated(config, page, content=to_markdown(notebook)))
    return files
