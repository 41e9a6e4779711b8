import pytest

from sinkfix import AnalysisSettings, SettingsError


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tau_att": -0.1}, {"tau_att": 1.5}, {"tau_norm": 2}, {"beta": -1}, {"beta": 1.01},
        {"epsilon": 3}, {"layer": -1}, {"layer": 1.5}, {"map_token_limit": -5}, {"max_tokens": 1},
        {"beta": "0.4"}, {"tau_att": True},
    ],
)
def test_out_of_range_is_refused(kwargs):
    with pytest.raises(SettingsError):
        AnalysisSettings(**kwargs)


def test_defaults_and_resolution():
    s = AnalysisSettings()
    assert (s.tau_att, s.tau_norm, s.beta, s.epsilon, s.map_token_limit) == (0.1, 0.5, 0.4, 0.3, 256)
    assert s.resolved(6).layer == 3
    assert s.resolved(30).layer == 15
    with pytest.raises(SettingsError, match="layers 0..5"):
        AnalysisSettings(layer=6).resolved(6)


def test_dict_round_trip():
    s = AnalysisSettings(layer=2, beta=0.0, max_tokens=64)
    assert AnalysisSettings.from_dict(s.to_dict()) == s
