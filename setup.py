"""Which packages the wheel holds; everything else is in pyproject.toml.

The repository's dashboard/ ships inside the wheel as ``sinkfix/_app/dashboard/`` (and the
Streamlit settings as ``sinkfix/_app/streamlit/config.toml``), so no top-level package named
``dashboard`` lands in site-packages. ``dashboard/Home.py`` puts its parent folder on sys.path,
which is the repository root in a clone and ``sinkfix/_app`` in a wheel, so the pages' ``import
dashboard...`` works in both. Folders are found, not listed, so a new subpackage is never left out.
"""
from setuptools import find_namespace_packages, setup

APP = "sinkfix._app"


def folders(top: str) -> list[str]:
    """Every folder under ``top`` as a package, with or without an __init__.py (views/ has none)."""
    return [name for name in find_namespace_packages(include=[top, f"{top}.*"]) if "__pycache__" not in name]


setup(
    packages=folders("sinkfix") + [f"{APP}.{name}" for name in folders("dashboard")] + [f"{APP}.streamlit"],
    package_dir={f"{APP}.dashboard": "dashboard", f"{APP}.streamlit": ".streamlit"},
    package_data={f"{APP}.streamlit": ["config.toml"]},
)
