"""Deep links: run ids, layer and head in the URL (``?run=ID&layer=L&head=H``, ``?runs=ID1,ID2``),
stored evaluations and calibrations (``evaluate?evaluation=ID``, ``evaluate?calibration=NAME``).

Pure parsing, so it is tested without Streamlit. Bad values raise LinkError, shown as st.error.
"""
from __future__ import annotations

from urllib.parse import urlencode

from sinkfix.errors import SinkFixError

ANALYZE = "views/analyze.py"
HISTORY = "views/history.py"
DRILLDOWN = "views/drilldown.py"
COMPARE = "views/compare.py"
HOME = "views/home.py"
EVALUATE = "views/evaluate.py"
LONGRUN = "views/longrun.py"
CORPUS = "views/corpus.py"
MAX_COMPARE = 4


class LinkError(SinkFixError):
    """A run id in the URL or an input box is not a positive whole number."""


def parse_run_id(value: str | int | None) -> int | None:
    """None for an empty value; a positive int; LinkError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().lstrip("#")
    if not text.isdigit() or int(text) < 1:
        raise LinkError(f"'{value}' is not a run id: run ids are whole numbers from 1 up")
    return int(text)


def parse_run_ids(value: str | None) -> list[int]:
    """"3, 5,9" -> [3, 5, 9], duplicates dropped, order kept."""
    if not value:
        return []
    ids: list[int] = []
    for part in value.replace(" ", ",").split(","):
        run_id = parse_run_id(part)
        if run_id is not None and run_id not in ids:
            ids.append(run_id)
    return ids


def join_run_ids(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids)


def drilldown_query(run_id: int, layer: int | None = None, head: int | None = None) -> dict[str, str]:
    query = {"run": str(run_id)}
    if layer is not None:
        query["layer"] = str(layer)
    if head is not None:
        query["head"] = str(head)
    return query


def compare_query(ids: list[int]) -> dict[str, str]:
    return {"runs": join_run_ids(ids)}


def parse_evaluation_id(value: str | int | None) -> int | None:
    """``?evaluation=ID``: None when empty, a positive int, LinkError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise LinkError(f"'{value}' is not an evaluation id: evaluation ids are whole numbers from 1 up")
    return int(text)


def url(page: str, query: dict[str, str]) -> str:
    """A relative URL for a table link column, e.g. ``drilldown?run=3`` (page paths map to url paths)."""
    slug = page.rsplit("/", 1)[-1].removesuffix(".py")
    return f"{slug}?{urlencode(query)}"
