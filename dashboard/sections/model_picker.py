"""The model picker pages share: an embedded model or another name on the server's list, plus device and dtype.

The free "Other" box takes any text, but only a name on the server's list (SINKFIX_API_MODELS, the same
list as the HTTP API; default: the embedded models) ever loads: anything else, a missing path, a folder
off the list or a hub id, gets the same one line when the job starts (``sinkfix.policy.check_model``).
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from sinkfix import models
from sinkfix.models import devices
from sinkfix.policy import ServerConfig

OTHER = "Other: hub id or local path"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Choice:
    name: str
    device: str = "auto"
    dtype: str = "auto"


def render(prefix: str, names: list[str] | None = None, help: str | None = None) -> Choice:
    """Widgets keyed ``{prefix}_model``, ``{prefix}_model_other``, ``{prefix}_device``, ``{prefix}_dtype``."""
    choice = st.selectbox(
        "Model", [*(names or list(models.EMBEDDED)), OTHER], key=f"{prefix}_model",
        help=help or "Embedded models work offline. Other: " + _listed(),
    )
    name = choice
    if choice == OTHER:
        name = st.text_input("Hub id or local path", key=f"{prefix}_model_other", help=_listed(),
                             placeholder="a name on this server's model list").strip()
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
    if choice != OTHER:
        return choice
    return st.text_input("Hub id or local path", key=f"{key}_other", help=_listed()).strip()


def _listed() -> str:
    return (f"a model on this server's list ({', '.join(ServerConfig.from_env().models)}; its administrator sets "
            "it with SINKFIX_API_MODELS). Other names and paths are not loaded.")
