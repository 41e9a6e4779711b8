"""The wheel: built with ``pip wheel --no-deps`` from a copy of the sources, then read as a zip.

It must declare the core dependencies and the extras, install a ``sinkfix`` script, and carry the
dashboard under sinkfix/_app/ (no top-level ``dashboard`` package in site-packages). The app is
then run from the unpacked wheel, outside the repository, to check its imports and where its cache
goes. The full install into a fresh virtualenv is a manual check (docs/development.md).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from sinkfix import paths
from sinkfix.cli import dashboard as dashboard_cli
from sinkfix.version import __version__

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "setup.py", "README.md", "sinkfix", "dashboard", ".streamlit"]
CORE = {"torch", "transformers", "tokenizers", "safetensors", "numpy", "sqlite-utils", "tqdm"}
EXTRAS = {
    "viz": {"altair", "vl-convert-python", "pandas"},
    "dashboard": {"streamlit", "sinkfix"},
    "server": {"fastapi", "uvicorn"},
    "ray": {"ray", "pyarrow"},
    "gguf": {"gguf", "accelerate"},
    "gpu": {"triton"},
    "test": {"pytest", "pytest-xdist"},
    "all": {"sinkfix"},
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the tracked sources (no stale build/ folder, no caches)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(root / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (built,) = (root / "dist").glob("sinkfix-*.whl")
    return built


def _sources(wheel: Path) -> Path:
    """The copy the wheel was built from (the repository may change while the tests run)."""
    return wheel.parent.parent / "src"


def _metadata(wheel: Path) -> tuple[list[str], dict[str, str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"sinkfix-{__version__}.dist-info"
        meta = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    return names, {"meta": meta, "entry_points": entry_points}  # type: ignore[dict-item]


def _name(requirement: str) -> str:
    """The distribution name of a Requires-Dist line: ``ray[data]<3,>=2.60; extra == "ray"`` -> ``ray``."""
    head = requirement.split(";")[0].strip()
    for stop in "[<>=!~ (":
        head = head.split(stop)[0]
    return head.lower().replace("_", "-")


def test_wheel_declares_core_dependencies_and_every_extra(wheel: Path) -> None:
    _, found = _metadata(wheel)
    meta = found["meta"]
    assert meta["Name"] == "sinkfix" and meta["Version"] == __version__ == "0.3.0"
    requires = meta.get_all("Requires-Dist")
    core = {_name(r) for r in requires if "extra ==" not in r}
    assert CORE <= core, CORE - core
    # Compatible ranges, not pins and not open-ended: every core requirement has both bounds.
    for line in requires:
        if "extra ==" not in line:
            assert "<" in line and ">=" in line, line
    assert set(meta.get_all("Provides-Extra")) >= set(EXTRAS)
    for extra, names in EXTRAS.items():
        declared = {_name(r) for r in requires if f'extra == "{extra}"' in r}
        assert names <= declared, (extra, names - declared)


def test_wheel_has_the_script_and_the_dashboard_inside_sinkfix(wheel: Path) -> None:
    names, found = _metadata(wheel)
    assert "sinkfix = sinkfix.cli:main" in found["entry_points"]
    tops = {name.split("/")[0] for name in names}
    assert tops == {"sinkfix", f"sinkfix-{__version__}.dist-info"}, tops  # no top-level dashboard package
    shipped = {name.removeprefix("sinkfix/_app/") for name in names if name.startswith("sinkfix/_app/dashboard/")}
    source = _sources(wheel)
    tracked = {path.relative_to(source).as_posix() for path in (source / "dashboard").rglob("*.py")}
    assert tracked and tracked <= shipped, tracked - shipped
    assert "sinkfix/_app/streamlit/config.toml" in names
    modules = {path.relative_to(source).as_posix() for path in (source / "sinkfix").rglob("*.py")}
    assert modules <= set(names), modules - set(names)


def test_the_unpacked_wheel_runs_the_app_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    """Home.py from the wheel imports its pages' ``dashboard`` package, and the cache is the user's."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    home = site / "sinkfix" / "_app" / "dashboard" / "Home.py"
    script = f"""
import sinkfix
from pathlib import Path
from sinkfix import paths
from streamlit.testing.v1 import AppTest
assert Path(sinkfix.__file__).is_relative_to({str(site)!r}), sinkfix.__file__
assert paths.dashboard_script() == Path({str(home)!r}), paths.dashboard_script()
assert paths.cache_dir() == Path({str(tmp_path / 'xdg' / 'sinkfix')!r}), paths.cache_dir()
app = AppTest.from_file({str(home)!r}, default_timeout=120).run()
assert not app.exception, [e.message for e in app.exception]
import dashboard
assert Path(dashboard.__file__).is_relative_to({str(site)!r}), dashboard.__file__
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "SINKFIX_DB": str(tmp_path / "runs.db"), "HF_HUB_OFFLINE": "1"}
    env.pop("SINKFIX_CACHE", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_cache_is_the_users_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SINKFIX_CACHE", raising=False)
    assert paths.is_source_checkout() and paths.cache_dir() == REPO / "cache"  # a clone keeps cache/
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "site-packages")  # as installed: no pyproject.toml
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert paths.cache_dir() == tmp_path / "xdg" / "sinkfix"
    monkeypatch.setenv("SINKFIX_CACHE", str(tmp_path / "mine"))
    assert paths.cache_dir() == tmp_path / "mine" and paths.models_dir() == tmp_path / "mine" / "models"


def test_dashboard_command_passes_the_streamlit_settings_and_binds_loopback(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[server]\nfileWatcherType = "none"\nheadless = true\n[theme]\nbase = "light"\n'
                      '[theme.sidebar]\ntextColor = "#111111"\n')
    assert dashboard_cli.config_flags(config) == [
        "--server.fileWatcherType", "none", "--server.headless", "true", "--theme.base", "light",
        "--theme.sidebar.textColor", "#111111"]
    from sinkfix.cli.main import build_parser

    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port) == ("127.0.0.1", 8501)
    command = dashboard_cli.streamlit_command(args.host, args.port)
    assert command[1:4] == ["-m", "streamlit", "run"] and Path(command[4]) == paths.dashboard_script()
    assert Path(command[4]).is_file()
    assert command[-6:] == ["--server.address", "127.0.0.1", "--server.port", "8501", "--server.headless", "true"]
