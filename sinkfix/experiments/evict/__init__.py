"""KV-cache eviction with kvpress's semantics, sink protection, and generated long-context tasks."""
