"""Experiments on a loaded model: in-forward interventions and their evaluation (NLL/PLL, STS-B,
calibrated head search), and the long-context and mechanism probes."""
