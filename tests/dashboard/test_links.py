"""Deep-link parsing: run ids from the URL or an input box."""
from __future__ import annotations

import pytest

from dashboard import links


def test_run_ids_parse_and_reject_garbage() -> None:
    assert links.parse_run_id(None) is None and links.parse_run_id("  ") is None
    assert links.parse_run_id("7") == 7 and links.parse_run_id(" #12 ") == 12
    for bad in ("0", "-1", "abc", "1.5", "<script>"):
        with pytest.raises(links.LinkError):
            links.parse_run_id(bad)
    assert links.parse_run_ids("3, 5,3 9") == [3, 5, 9]
    assert links.parse_run_ids("") == []


def test_queries_and_urls() -> None:
    assert links.drilldown_query(4, 2, 7) == {"run": "4", "layer": "2", "head": "7"}
    assert links.compare_query([2, 1]) == {"runs": "2,1"}
    assert links.url(links.DRILLDOWN, {"run": "3"}) == "drilldown?run=3"
