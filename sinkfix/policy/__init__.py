"""What a visitor may make a shared SinkFix do: one policy for the HTTP API and the dashboard.

``config`` (limits and the model list, from the environment), ``allowlist`` (which models load),
``files`` (which text files are read, and how much of them), ``line`` (the admission line: one heavy
job per model, a bounded first-come line with places and a wait estimate, for the API and the
dashboard), ``signin`` (whether a dashboard may listen beyond this machine), ``identity`` (who a
request is: token names, administrators), ``ownership`` (whose stored rows a viewer may read or
change). The threat model and the settings are in docs/security.md. No module here imports
streamlit or FastAPI.
"""
from sinkfix.policy.allowlist import ModelNotAllowedError, check_model  # noqa: F401
from sinkfix.policy.config import ServerConfig, ServerConfigError  # noqa: F401
from sinkfix.policy.files import (  # noqa: F401
    FileNotAllowedError,
    TextFile,
    check_text,
    data_folders,
    read_text,
    read_upload,
)
from sinkfix.policy.line import Line, LineFullError, Lines  # noqa: F401
