"""The seed rule's label boundaries (both thresholds inclusive) and token-0 protection."""
import numpy as np
import pytest

from sinkfix.analysis.classify import BENEFICIAL, DETRIMENTAL, NEUTRAL, SeedRule, indices_with

RULE = SeedRule(tau_att=0.1, tau_norm=0.5)


@pytest.mark.parametrize(
    ("att", "norm", "label"),
    [
        (0.1, 0.5, DETRIMENTAL),  # exactly on both thresholds
        (0.0999999, 0.5, NEUTRAL),  # just below tau_att
        (0.1, 0.5000001, NEUTRAL),  # just above tau_norm
        (0.9, 0.0, DETRIMENTAL),
        (0.05, 0.1, NEUTRAL),
        (0.5, 0.9, NEUTRAL),
    ],
)
def test_boundaries(att, norm, label):
    labels = RULE.labels(np.array([0.5, att], dtype=np.float64), np.array([0.1, norm], dtype=np.float64))
    assert labels == [BENEFICIAL, label]


def test_token_zero_is_always_beneficial():
    assert RULE.labels(np.array([0.0]), np.array([1.0])) == [BENEFICIAL]
    assert RULE.labels(np.array([0.9]), np.array([0.0])) == [BENEFICIAL]


def test_indices_with():
    assert indices_with([BENEFICIAL, DETRIMENTAL, NEUTRAL, DETRIMENTAL], DETRIMENTAL) == [1, 3]
