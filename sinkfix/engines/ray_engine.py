"""The Ray Data engine: a corpus analysed by a pool of model-holding actors, on one machine or a cluster.

``map_batches`` with a callable class makes stateful actors, so each worker loads the model once
(``num_gpus`` per actor on GPU nodes). Workers return per-text reductions (``engines.rows``:
tokens, labels and the flattened float32 arrays; never the L x H x T x T maps) as Arrow tables.
The driver is the only writer: it receives the batches in input order (``preserve_order``) and
saves each batch of runs in one transaction. Lines already stored are never sent, so a rerun
resumes, and an interrupt keeps every batch the driver has received.

On a cluster the driver never loads the model: a one-off task on a worker reports the model's
identity (name, source, weights fingerprint, device, dtype), which is all the cache keys need.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sinkfix import paths
from sinkfix.engines.common import (
    BatchResult, CorpusLine, CorpusWriter, ModelIdentity, check_keep, interrupted, progress_bar,
    request_key_of, split_stored, wrap_up,
)
from sinkfix.engines.parquet import ParquetSink
from sinkfix.engines.rows import from_row
from sinkfix.errors import SettingsError, SinkFixError
from sinkfix.settings import AnalysisSettings
from sinkfix.policy.ownership import Viewer
from sinkfix.store import Store

DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` None starts a single-node Ray here; else it joins that cluster."""

    address: str | None = None
    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise SettingsError(f"--workers must be a whole number >= 1, got {self.workers!r}")
        if self.gpus_per_worker < 0 or self.cpus_per_worker <= 0:
            raise SettingsError("--gpus-per-worker must be >= 0 and CPUs per worker > 0")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SettingsError(f"--batch-size must be a whole number >= 1, got {self.batch_size!r}")

    @property
    def device(self) -> str:
        """A CPU worker on a GPU node must not take the GPU: the device follows the actor's resources."""
        return "cuda" if self.gpus_per_worker > 0 else "cpu"

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_worker))


def connect(options: RayOptions) -> bool:
    """Start or join Ray unless this process already did; True when this call started it (and so
    must shut it down).

    Without an address the cluster is always a new single-node one here: ``address="local"``. A bare
    ``ray.init()`` would first try ``RAY_ADDRESS`` and then the last ``ray start`` head recorded in
    ``<ray temp dir>/ray_current_cluster``, a file a stopped head leaves behind, and fail there
    ("num_cpus ... must not be provided") instead of starting one (docs/deployment.md).
    """
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": _worker_env()}
    if options.address:
        # Ship this checkout's sinkfix package to the cluster; nodes need only the requirements.
        runtime_env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
        try:
            ray.init(address=options.address, runtime_env=runtime_env, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError) as error:
            raise RayConnectionError(options.address, error) from None
    else:
        cpus = max(1, int(options.workers * options.cpus_per_worker))
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env,
                 logging_level=logging.WARNING)
    return True


class RayConnectionError(SinkFixError):
    """``--address`` named a cluster this process could not join."""

    def __init__(self, address: str, error: Exception) -> None:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        super().__init__(
            f"could not join the Ray cluster at {address!r} ({first}). On the head node use --address auto; "
            "elsewhere give the head's node IP and port (ray start prints it) or ray://HEAD:10001. A head "
            "started with token authentication needs RAY_AUTH_MODE=token and its token on this machine "
            "(docs/deployment.md)")


def _worker_env() -> dict[str, str]:
    """What workers must see as this process does: where the cache and converted models live, offline mode."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("SINKFIX_", "HF_", "TRANSFORMERS_"))}
    env.setdefault("SINKFIX_CACHE", str(paths.cache_dir()))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _quiet_data_context() -> None:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the driver writes in input order
    context.enable_progress_bars = False  # SinkFix shows its own bar
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def load_on_worker(model_name: str, device: str, threads: int):
    import torch

    from sinkfix.models import get_model

    torch.set_num_threads(threads)
    return get_model(model_name, device=device)


def model_identity(model_name: str, options: RayOptions) -> ModelIdentity:
    """The model's identity. On a single CPU node the driver loads the model itself (seconds); on a
    cluster or GPU workers a task on a worker reports it, so the driver needs no GPU and no weights."""
    import ray

    if options.address is None and options.gpus_per_worker == 0:
        from sinkfix.models import get_model

        return ModelIdentity.of(get_model(model_name, device="cpu"))

    task = ray.remote(lambda name, device: ModelIdentity.of(load_on_worker(name, device, 1)))
    return ray.get(task.options(num_gpus=options.gpus_per_worker, num_cpus=options.cpus_per_worker)
                   .remote(model_name, options.device))


class TextAnalyzer:
    """A Ray Data actor: holds the model, analyses batches with ``analyze_many``, returns reductions."""

    def __init__(self, model_name: str, settings: dict, batch_size: int, device: str, threads: int):
        from sinkfix.engines.common import without_maps

        self.loaded = load_on_worker(model_name, device, threads)
        self.settings = AnalysisSettings.from_dict(settings)
        self.compute = without_maps(self.settings)
        self.batch_size = batch_size

    def __call__(self, batch: dict):
        from sinkfix.analysis.pipeline import analyze_many
        from sinkfix.engines.common import restamp
        from sinkfix.engines.rows import table, to_row

        results = analyze_many([str(t) for t in batch["text"]], self.loaded, self.compute, batch_size=self.batch_size)
        return table([{"line_no": int(n), **to_row(restamp(r, self.settings))}
                      for n, r in zip(batch["line_no"], results)])


def run_batch_ray(lines: list[CorpusLine], model_name: str, settings: AnalysisSettings | None, store: Store,
                  name: str, options: RayOptions, source: str = "", progress: bool = True, keep: str = "summary",
                  parquet: str | Path | None = None, on_batch: Callable[[int], None] | None = None, *,
                  viewer: Viewer) -> BatchResult:
    """``run_batch`` on Ray: the same stored runs and corpus summary as the local engine, ``viewer``'s.

    ``on_batch(n)`` is called after each batch of ``n`` texts is stored (the benchmark times it).
    """
    if check_keep(keep) == "maps":
        raise SettingsError("--engine ray stores summaries only (workers send reductions, not maps); "
                            "use --engine local for --keep maps")
    import ray
    import ray.data

    started = connect(options)
    try:
        identity = model_identity(model_name, options)
        resolved = (settings or AnalysisSettings()).resolved(identity.n_layers, identity.attention_layers)

        def key_of(text: str) -> str:
            return request_key_of(identity, text, resolved)

        corpus_id = store.open_corpus(name, identity.name, resolved.to_dict(), source, viewer=viewer)
        store.save_corpus_summary(corpus_id, None)
        stored, todo, repeats = split_stored(lines, store, keep, key_of, viewer)
        store.add_corpus_runs(corpus_id, [(line.line_no, run_id) for line, run_id in stored])
        writer = CorpusWriter(store, corpus_id, keep, key_of)
        sink = None if parquet is None else ParquetSink(parquet, name, identity.name, resolved, source)
        analysed = 0
        bar = progress_bar(len(lines), name, progress, initial=len(stored))
        try:
            if todo:
                _quiet_data_context()
                blocks = max(options.workers * 4, len(todo) // (options.batch_size * 4))
                dataset = ray.data.from_items([{"line_no": line.line_no, "text": line.text} for line in todo],
                                              override_num_blocks=min(len(todo), blocks))
                results = dataset.map_batches(
                    TextAnalyzer, batch_size=options.batch_size, batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=options.workers),
                    num_gpus=options.gpus_per_worker, num_cpus=options.cpus_per_worker,
                    fn_constructor_args=(model_name, resolved.to_dict(), options.batch_size, options.device,
                                         options.threads))
                texts = {line.line_no: line for line in todo}
                for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
                    analyses = [from_row(row) for row in batch.to_pylist()]
                    lines_done = [texts[int(n)] for n in batch.column("line_no").to_pylist()]
                    ids = writer.write(list(zip(lines_done, analyses)))
                    if sink is not None:
                        sink.write(zip(lines_done, ids, analyses))
                    analysed += len(ids)
                    bar.advance(len(ids))
                    if on_batch is not None:
                        on_batch(len(ids))
        except KeyboardInterrupt:
            bar.close()
            interrupted(analysed + len(stored), len(lines))
            raise
        return wrap_up(store, corpus_id, name, lines, resolved.epsilon, analysed=analysed, stored=stored,
                       repeats=repeats, keep=keep, key_of=key_of, bar=bar, sink=sink, viewer=viewer)
    finally:
        if started:
            ray.shutdown()
