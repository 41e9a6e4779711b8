"""The units convention lives in the core, ``sinkfix.units``, so a notebook formats numbers as the pages do."""
from sinkfix.units import (  # noqa: F401  (the pages and their tests read them as dashboard.units)
    GLOSSARY, HEADLINES, MISSING, headline, interval, nats, number, percent, plural, ppl, ratio, when,
)
