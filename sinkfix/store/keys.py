"""Cache keys: a request's key hashes everything its result depends on.

That is the model (name, source and weights fingerprint), the device and dtype it ran in, the
text, the resolved settings and the SinkFix version, so a new release never serves results an
older one computed. The keys live beside the runs they index; ``sinkfix.cache`` uses them to serve
an identical request from the database.
"""
from __future__ import annotations

import hashlib
import json

from sinkfix.analysis.result import Analysis


def request_key(model_name: str, model_id: str, fingerprint: str, text: str, settings: dict,
                version: str, device: str | None = None, dtype: str | None = None) -> str:
    payload = {"model": model_name, "model_id": model_id, "fingerprint": fingerprint, "text": text,
               "settings": settings, "version": version}
    # float32 on the CPU is what every key meant before devices existed: keep those keys stable.
    if (device, dtype) not in ((None, None), ("cpu", "float32")):
        payload.update(device=device, dtype=dtype)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def key_of_analysis(analysis: Analysis) -> str:
    """The key of the request that produced ``analysis`` (its settings are already resolved)."""
    return request_key(analysis.model_name, analysis.model_id, analysis.fingerprint, analysis.text,
                       analysis.settings.key_dict(), analysis.version,
                       getattr(analysis, "device", None), getattr(analysis, "dtype", None))
