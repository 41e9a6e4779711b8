"""The one place tests look for external data, and the one-line skip when it is absent."""
from pathlib import Path

import pytest

from ..shared_data import data_dir, require_data


def test_sinkfix_data_overrides_the_shared_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tinyshakespeare.txt").write_text("First Citizen:\n")
    monkeypatch.setenv("SINKFIX_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    assert require_data("tinyshakespeare.txt") == tmp_path / "tinyshakespeare.txt"


def test_absent_data_skips_with_one_line_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_data("stsbenchmark")
    message = str(skipped.value)
    assert "SINKFIX_DATA" in message and "stsbenchmark" in message and "\n" not in message
