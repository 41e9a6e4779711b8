"""The text-file input the Experiments forms share: a file from the data folders, or the visitor's upload.

A name is read only through ``sinkfix.policy.files``: resolved (symlinks, ``..``), then refused with
one line unless it lies in a data folder (SINKFIX_DATA, SINKFIX_DATA_DIRS). The box starts on a file
that exists there (tinyshakespeare.txt when the project's data is beside the repository), or empty.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st

from dashboard import visitors
from sinkfix.policy import files

PREFERRED = "tinyshakespeare.txt"
SHOWN = 8  # file names listed in the box's help


@dataclass(frozen=True)
class Source:
    name: str  # as typed: a file in the data folders
    upload: object | None  # st.file_uploader's UploadedFile, which wins over the name


def default_file(names: list[str]) -> str:
    """The box's starting value: a file that is there, never a path that does not exist."""
    return PREFERRED if PREFERRED in names else (names[0] if names else "")


def render(key: str, label: str = "Text file") -> Source:
    """Widgets keyed ``key`` (the name) and ``{key}_upload``; call inside the form."""
    names = files.listed()
    shown = ", ".join(names[:SHOWN]) + (", …" if len(names) > SHOWN else "") if names else "none yet"
    limit = visitors.limits().max_body
    name = st.text_input(label, default_file(names), key=key, placeholder="a .txt file in the data folders",
                         help=f"A file in this server's data folders ({shown}); other paths are not read. "
                              f"At most the first {limit:,} bytes are used.")
    upload = st.file_uploader("…or upload a .txt file (it replaces the name above)", type=["txt"],
                              key=f"{key}_upload", max_upload_size=max(1, math.ceil(limit / 2**20)),
                              help=f"Up to {limit:,} bytes, UTF-8 text.")
    return Source(name.strip(), upload)


def read(source: Source) -> files.TextFile:
    """The text (FileNotAllowedError / InputError, one line each, when it may not or cannot be read)."""
    limit = visitors.limits().max_body
    if source.upload is not None:
        return files.read_upload(source.upload.name, source.upload.getvalue(), limit)
    return files.read_text(source.name, limit)
