"""Property-based tests (Hypothesis): settings validation, ACT redistribution invariants, the blob codec.

Each property is checked on a few hundred generated cases (``pytest --hypothesis-show-statistics``
prints how many); ``database=None`` keeps Hypothesis from writing an example database into the repo.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sinkfix.analysis.redistribute import redistribute
from sinkfix.errors import SettingsError
from sinkfix.settings import BOS_MODES, AnalysisSettings
from sinkfix.store import tensorio

PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = ["layer", "tau_att", "tau_norm", "beta", "epsilon", "map_token_limit", "max_tokens", "query_block", "bos"]
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.just(10**400), st.just(-(10**400)),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.sampled_from(BOS_MODES),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


# ---------------------------------------------------------------- settings


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@PROPERTY
@given(st.dictionaries(st.sampled_from(FIELDS), ANY_VALUE), st.integers(min_value=1, max_value=64))
def test_settings_are_valid_or_a_settings_error(data: dict, n_layers: int) -> None:
    try:
        made = AnalysisSettings.from_dict(data)
    except SettingsError as error:
        assert "\n" not in str(error)
        return
    for name in ("tau_att", "tau_norm", "beta", "epsilon"):
        value = getattr(made, name)
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    assert made.layer is None or (_is_whole(made.layer) and made.layer >= 0)
    assert _is_whole(made.map_token_limit) and made.map_token_limit >= 0
    assert made.max_tokens is None or (_is_whole(made.max_tokens) and made.max_tokens >= 2)
    assert made.query_block is None or (_is_whole(made.query_block) and made.query_block >= 1)
    assert made.bos in BOS_MODES
    assert AnalysisSettings.from_dict(made.to_dict()) == made
    try:
        resolved = made.resolved(n_layers)
    except SettingsError:
        assert made.layer is not None and made.layer >= n_layers
    else:
        assert 0 <= resolved.layer < n_layers


# ---------------------------------------------------------------- redistribution


@st.composite
def attention(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Row-stochastic [H, T, T] maps (causal: zero above the diagonal), a sink set and beta."""
    heads, n = draw(st.integers(1, 3)), draw(st.integers(1, 9))
    causal = draw(st.booleans())
    raw = draw(hnp.arrays(np.float64, (heads, n, n), elements=st.floats(0, 1)))
    if causal:
        raw = raw * np.tril(np.ones((n, n)))
    visible = np.tril(np.ones((n, n))) if causal else np.ones((n, n))
    empty = raw.sum(-1, keepdims=True) == 0
    raw = np.where(empty, visible, raw)  # a row with no mass becomes uniform over its visible keys
    probs = raw / raw.sum(-1, keepdims=True)
    sinks = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    beta = draw(st.floats(0, 1))
    return probs, sinks, beta, causal


@PROPERTY
@given(attention())
def test_redistribution_invariants(case: tuple[np.ndarray, np.ndarray, float, bool]) -> None:
    probs, sinks, beta, causal = case
    out = redistribute(torch.from_numpy(probs), torch.from_numpy(sinks), beta).numpy()
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-12)  # rows still sum to 1
    assert (out[probs == 0] == 0).all()  # masked (and zero) entries stay 0
    sink_mass = (probs * sinks).sum(-1)
    rest_mass = (probs * ~sinks).sum(-1)
    for index in np.ndindex(probs.shape[:-1]):
        row, new = probs[index], out[index]
        if rest_mass[index] <= 0:  # every visible token is a sink: left unchanged
            np.testing.assert_array_equal(new, row)
            continue
        np.testing.assert_allclose(new[sinks], beta * row[sinks], rtol=1e-12, atol=0)  # sinks scaled by beta
        # The rest grows in proportion, by the (1 - beta) share of the sink mass (the formula, by hand).
        expected = row[~sinks] + (1 - beta) * sink_mass[index] * (row[~sinks] / rest_mass[index])
        np.testing.assert_allclose(new[~sinks], expected, rtol=1e-12, atol=1e-15)
    if causal:
        assert (np.triu(out, k=1) == 0).all()


# ---------------------------------------------------------------- the blob codec

DTYPES = [np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
          np.float16, np.float32, np.float64]


@st.composite
def named_arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    names = draw(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8),
                          min_size=1, max_size=3, unique=True))
    out = {}
    for name in names:
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
        # Any bit pattern: NaN payloads, -0.0, infinities and subnormals must survive bit for bit.
        raw = draw(st.binary(min_size=dtype.itemsize * math.prod(shape), max_size=dtype.itemsize * math.prod(shape)))
        array = np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape) if dtype != np.bool_ else \
            (np.frombuffer(raw, dtype=np.uint8) % 2).astype(bool).reshape(shape)
        if draw(st.booleans()) and array.ndim >= 2:
            array = array.T  # not C-contiguous: dumps must copy, not fail or scramble
        out[name] = array
    return out


@PROPERTY
@given(named_arrays(), st.booleans())
def test_blob_codec_round_trip_is_bit_exact(arrays: dict[str, np.ndarray], compress: bool) -> None:
    restored = tensorio.loads(tensorio.dumps(arrays, compress=compress))
    assert set(restored) == set(arrays)
    for name, array in arrays.items():
        got = restored[name]
        assert got.dtype == array.dtype and got.shape == array.shape
        assert got.tobytes() == np.ascontiguousarray(array).tobytes()


def test_redistribution_of_a_row_a_sink_almost_fills_keeps_the_row_stochastic_in_float32() -> None:
    """The case Hypothesis found: with 1 - 1e-6 of the mass on the sink, computing the rest as
    total - sink cancelled and the float32 row summed to 1.12."""
    row = torch.full((8,), 1e-6 / 7, dtype=torch.float64)
    row[0] = 1 - 1e-6
    mask = torch.zeros(8, dtype=torch.bool)
    mask[0] = True
    out = redistribute(row.float()[None], mask, 0.4)[0].double()
    assert abs(float(out.sum()) - 1) < 1e-6
    expected = row[1:] + 0.6 * row[0] * row[1:] / row[1:].sum()  # by hand, in float64
    np.testing.assert_allclose(out[1:].numpy(), expected.numpy(), rtol=1e-5)
