"""Errors a user can cause. Each carries a plain one-line message meant to be shown as is."""


class SinkFixError(Exception):
    """Base class: the CLI prints these without a traceback, the dashboard shows them in st.error."""


class InputError(SinkFixError):
    """The text to analyse is unusable (empty, blank)."""


class SettingsError(SinkFixError):
    """A threshold, beta, layer or limit is out of range."""


class ModelNotFoundError(SinkFixError):
    """The model name resolves to nothing loadable from here."""


class UnsupportedModelError(SinkFixError):
    """The model loads but its attention cannot be captured by SinkFix."""


class StoreError(SinkFixError):
    """The database is unusable, or a run id does not exist."""


class RunNotFoundError(StoreError):
    """No stored run has that id."""


class CorpusNotFoundError(StoreError):
    """No stored corpus has that name."""


class StoreFullError(StoreError):
    """The disk (or SQLite's page limit) is full: nothing was written; writes work again once there is room."""


class StoreReadOnlyError(StoreError):
    """The database file is read-only here: stored runs can be read, new ones cannot be saved."""


class MissingExtraError(SinkFixError):
    """An optional part of SinkFix needs a package that is not installed (the message names the extra)."""
