"""Analysis: metrics, the classification rules, ACT redistribution, the Analysis result and analyze()."""
