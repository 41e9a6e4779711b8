"""SinkFix in a notebook: results that render themselves, the dashboard's charts, and data frames.

- ``render``: ``Analysis._repr_html_`` / ``_repr_mimebundle_``, a compact summary with a static SVG bar chart
  (no JavaScript, so it shows in GitHub and nbviewer previews and in untrusted notebooks);
- ``plots``: ``analysis.plot``, the accessor whose methods return the Altair charts the dashboard draws;
- ``frames``: ``analysis.frame("tokens" | "heads")`` and ``Store.frame()``, pandas DataFrames with
  documented columns and units;
- ``stored`` and ``experiment_plots``: stored evaluations and experiments (``Store.evaluation``,
  ``Store.experiment``) render themselves and have a ``.plot`` of their own, one registry entry per kind.

Charts and frames need the ``viz`` extra (altair, pandas): ``pip install "sinkfix[viz]"``. The HTML
summaries need nothing beyond the core. Nothing here imports Streamlit.
"""
