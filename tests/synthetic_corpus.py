"""A large synthetic corpus written straight into a store (the Corpus page's scale test and benchmark).

A few dozen synthetic analyses (6 layers x 12 heads, 8-23 tokens, like MiniLM on short sentences)
are reused as templates with distinct texts; ``Store.insert_corpus_runs`` writes them, encoded once, in big
transactions, so 100k summary-only runs take a minute, not an hour. The stored summary is the
real summary of exactly those runs.
"""
from __future__ import annotations

from sinkfix.analysis.corpus import RunStats, summarize
from sinkfix.engines.rows import summary_only
from sinkfix.policy.ownership import LOCAL
from sinkfix.settings import AnalysisSettings
from sinkfix.store import Store
from sinkfix.store.corpora import encode_run

from tests.synthetic import synthetic_analysis

TEMPLATES = 32
CHUNK = 2000


def fill_synthetic_corpus(store: Store, name: str, n_inputs: int, model: str = "synthetic") -> int:
    """Corpus ``name`` with ``n_inputs`` summary-only runs; returns its id."""
    settings = AnalysisSettings(tau_att=0.12).resolved(6)
    templates = [summary_only(synthetic_analysis(n_layers=6, n_heads=12, n_tokens=8 + s % 16, seed=s,
                                                 model_name=model, settings=settings)) for s in range(TEMPLATES)]
    corpus_id = store.open_corpus(name, model, settings.to_dict(), "synthetic", viewer=LOCAL)
    encoded = [encode_run(t, "") for t in templates]  # encode each template once; only text and key differ
    for start in range(0, n_inputs, CHUNK):
        items = []
        for i in range(start, min(n_inputs, start + CHUNK)):
            row, tokens, heads, blobs = encoded[i % TEMPLATES]
            row = {**row, "text": f"{row['text']} #{i}", "cache_key": f"synthetic-{name}-{i}"}
            items.append((i + 1, (row, tokens, heads, blobs)))
        store.insert_corpus_runs(corpus_id, items)
    stats = [RunStats(t.tokens, t.alpha.max(axis=-1), t.sink_rate, t.value_norm, t.labels) for t in templates]
    summary = summarize([stats[i % TEMPLATES] for i in range(n_inputs)], settings.epsilon)
    store.save_corpus_summary(corpus_id, summary.to_json())
    return corpus_id
