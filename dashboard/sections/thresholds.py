"""The Analyze form's thresholds: typed values kept at the run's own precision, and a slider for τ_att
on a scale that suits the text length.

att_received sums to 1 over the T tokens, so the even share is 1/T: 0.067 for 15 tokens but 0.0027
for 366. A 0-1 slider in steps of 0.01 cannot reach the thresholds that matter on a long text, and it
rounds a stored 0.035 to 0.04. So each threshold is a number box (exactly what was stored or typed),
and τ_att also gets a slider in multiples of the even share, which writes into the box.
"""
from __future__ import annotations

import streamlit as st

MULTIPLES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0,
             200.0, 500.0)
TAU_ATT_HELP = ("att_received[j] = (1/T)·Σ_i Ā[i,j], where Ā averages the attention maps over layers and heads; it "
                "sums to 1 over tokens. A token (other than token 0) with att_received ≥ τ_att and value_norm ≤ "
                "τ_norm is detrimental. Typed values are kept exactly.")


def estimate_tokens(text: str) -> int:
    """About how many tokens a text has before it is tokenized: words, plus a few for specials and pieces."""
    return max(2, round(len(text.split()) * 1.3) + 2)


def multiples(n_tokens: int) -> list[float]:
    """The slider's stops: multiples m of the even share 1/T with m/T ≤ 1."""
    return [m for m in MULTIPLES if m / n_tokens <= 1.0] or [1.0]


def nearest(value: float, n_tokens: int) -> float:
    return min(multiples(n_tokens), key=lambda m: abs(m / n_tokens - value))


def as_share(multiple: float, n_tokens: int) -> float:
    """m/T rounded to 6 significant digits, so the box shows 0.0054645 rather than 0.005464480874316939."""
    return float(f"{multiple / n_tokens:.6g}")


def tau_att_input(prefix: str, n_tokens: int, exact: bool) -> float:
    """The τ_att box (key ``{prefix}_tau_att``) and its even-share slider. ``exact``: n_tokens is the run's
    token count, not an estimate from the text.

    No callback joins the two: a callback that set one widget from the other fired on reruns the user did
    not make (Streamlit reported the slider as changed when another widget committed, and a typed 0.05
    became 2/18). The slider is drawn afresh at the stop nearest the box (its key names the box's value);
    only when the user moves it does the script write m/T into the box, on the next run."""
    key, pending = f"{prefix}_tau_att", f"_{prefix}_tau_att_from_slider"
    if pending in st.session_state:  # before the box is drawn: a widget's state cannot change after
        st.session_state[key] = st.session_state.pop(pending)
    value = float(st.number_input("τ_att", 0.0, 1.0, step=0.0005, format="%.6f", key=key, help=TAU_ATT_HELP) or 0.0)
    start = nearest(value, n_tokens)
    moved = st.select_slider(
        f"τ_att in even shares (1/T, T {'=' if exact else '≈'} {n_tokens})", multiples(n_tokens), value=start,
        key=f"{prefix}_tau_att_x_{n_tokens}_{value!r}", format_func=lambda m: f"{m:g}×",
        help=f"The even share of attention is 1/T = {1 / n_tokens:.4g}: a token at 1× gets exactly its share, "
             "a sink gets many times more. Moving the slider writes m/T into the box above.")
    if moved != start:
        st.session_state[pending] = as_share(moved, n_tokens)
        st.rerun()
    st.caption(share_caption(value, n_tokens, exact))
    return value


def share_caption(value: float, n_tokens: int, exact: bool) -> str:
    return (f"τ_att = {value:g} is {value * n_tokens:.3g}× the even share 1/T = {1 / n_tokens:.4g} "
            f"(T {'=' if exact else '≈'} {n_tokens}).")
