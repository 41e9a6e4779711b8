"""mkdocs hook: every object the API reference renders must have a docstring.

mkdocstrings leaves an object without a docstring out of the page, silently. This hook reads each
``::: identifier`` in docs/reference/ (with its ``members`` option, if any), loads the object with
griffe as mkdocstrings does, and logs a warning for the object and for each public function, class
or method it would render without a docstring. ``mkdocs build --strict`` (``make test``) turns the
warning into a failed build.
"""
from __future__ import annotations

import logging
import re
import textwrap
from functools import cache
from pathlib import Path

import griffe
import yaml

log = logging.getLogger("mkdocs.plugins.docstrings")
DIRECTIVE = re.compile(r"^::: *([\w.]+)[ \t]*\n((?:[ \t]+.*\n|[ \t]*\n)*)", re.MULTILINE)
ROOT = Path(__file__).resolve().parents[2]


@cache
def _package() -> griffe.Module:
    return griffe.load("sinkfix", search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False)


def _object(identifier: str) -> griffe.Object:
    found = _package()[identifier.removeprefix("sinkfix.")] if identifier != "sinkfix" else _package()
    return found.final_target if found.is_alias else found


def _members(options: dict, target: griffe.Object) -> list[tuple[str, griffe.Object]]:
    """The functions, classes and methods mkdocstrings renders under ``target``."""
    if not (target.is_class or target.is_module) or options.get("members") is False:
        return []
    chosen = options.get("members")
    out = []
    for name, member in target.members.items():
        if isinstance(chosen, list) and name not in chosen:
            continue
        if name.startswith("_") or member.is_alias or member.is_attribute:
            continue
        out.append((name, member))
    return out


def missing_docstrings(markdown: str) -> list[str]:
    """Dotted paths of rendered objects that have no docstring, for one reference page."""
    missing = []
    for identifier, block in DIRECTIVE.findall(markdown):
        options = (yaml.safe_load(textwrap.dedent(block)) or {}).get("options", {}) if block.strip() else {}
        target = _object(identifier)
        if not target.docstring:
            missing.append(identifier)
        missing += [f"{identifier}.{name}" for name, member in _members(options, target) if not member.docstring]
    return missing


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (mkdocs' hook signature)
    if page.file.src_uri.startswith("reference/"):
        for path in missing_docstrings(markdown):
            log.warning(f"{page.file.src_uri}: {path} has no docstring, so the API reference would leave it out")
    return markdown
