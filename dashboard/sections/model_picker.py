"""The model picker pages share: an embedded model or any hub id / local path, plus device and dtype."""
from __future__ import annotations

from dataclasses import dataclass

import os
from pathlib import Path

import streamlit as st

from sinkfix import models
from sinkfix.models import devices

OTHER = "Other: hub id or local path"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# The project's shared evaluation data (tinyshakespeare, STS-B); SINKFIX_DATA points elsewhere.
DATA = Path(os.environ.get("SINKFIX_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SHAKESPEARE = str(DATA / "tinyshakespeare.txt")


@dataclass(frozen=True)
class Choice:
    name: str
    device: str = "auto"
    dtype: str = "auto"


def render(prefix: str, names: list[str] | None = None, help: str | None = None) -> Choice:
    """Widgets keyed ``{prefix}_model``, ``{prefix}_model_other``, ``{prefix}_device``, ``{prefix}_dtype``."""
    choice = st.selectbox(
        "Model", [*(names or list(models.EMBEDDED)), OTHER], key=f"{prefix}_model",
        help=help or "Embedded models work offline. Other: a Hugging Face hub id (needs the hub or a local cache) "
        "or a local directory holding config.json and weights.",
    )
    name = choice
    if choice == OTHER:
        name = st.text_input("Hub id or local path", key=f"{prefix}_model_other",
                             placeholder="google-bert/bert-base-uncased").strip()
    cols = st.columns(2)
    device = cols[0].selectbox(
        "Device", DEVICES, key=f"{prefix}_device",
        help="auto: a CUDA GPU when there is one, else the CPU. A device this machine lacks is an error box.",
    )
    dtype = cols[1].selectbox(
        "Weights dtype", DTYPES, key=f"{prefix}_dtype",
        help="auto: float32 on the CPU, bfloat16 on a GPU that supports it. Softmax and every reduction stay "
        "float32 whatever the weights use.",
    )
    return Choice(name, device, dtype)


def set_model(prefix: str, name: str, device: str = "auto", dtype: str = "auto") -> None:
    """Put a stored run's model into the picker (before its widgets are drawn)."""
    if name in models.EMBEDDED:
        st.session_state[f"{prefix}_model"] = name
    else:
        st.session_state[f"{prefix}_model"] = OTHER
        st.session_state[f"{prefix}_model_other"] = name
    # What "auto" gives on this machine stays "auto", so a re-run here loads the model as before.
    auto_device = devices.resolve_device("auto")
    same = device == auto_device and dtype == devices.resolve_dtype("auto", auto_device)
    st.session_state[f"{prefix}_device"] = "auto" if same or device not in DEVICES else device
    st.session_state[f"{prefix}_dtype"] = "auto" if same or dtype not in DTYPES else dtype


def name_only(key: str, default: str | None = None, label: str = "Model") -> str:
    """Just a model name (no device/dtype): widgets keyed ``key`` and ``{key}_other``."""
    names = list(models.EMBEDDED)
    index = names.index(default) if default in names else 0
    choice = st.selectbox(label, [*names, OTHER], index=index, key=key)
    return st.text_input("Hub id or local path", key=f"{key}_other").strip() if choice == OTHER else choice
