"""Pure chart builders, ``data -> alt.Chart``: the dashboard's charts, usable from a notebook.

They need the ``viz`` extra (altair, pandas) and never import Streamlit. One module per subject:
``analysis`` (one run's tokens, heads, maps and plane), ``compare``, ``evaluation``, ``findings``,
``lab``, ``mechanisms``, ``longcontext``, ``longrun``; ``base`` holds what they share.
"""
