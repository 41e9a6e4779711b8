"""``calibrate --engine ray``: the head search's trials on Ray Data actors, one head per task.

Each actor loads the model and makes the dev split's clean pass once (the STS pair set, or the
NLL chunks with their statistics), then scores one head per call. The driver keeps everything
else of the search as the local engine does (ranking by mass, keeping, the held-out check), so the
selected heads are the same: every trial's gain is measured against the baseline of the worker that
ran it, so a head that moves nothing gains exactly 0 there too.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sinkfix.engines.ray_engine import RayOptions, connect, load_on_worker
from sinkfix.experiments.calibrate import HeadScorer
from sinkfix.progress import Step, counter


class HeadScorerActor:
    """Holds the model and the dev split's clean pass; scores the heads of each batch."""

    def __init__(self, model_name: str, task: str, dev, intervention, max_tokens: int, device: str, threads: int):
        from sinkfix.experiments import calibrate
        from sinkfix.experiments.evaluate import run_chunks
        from sinkfix.experiments.sts import PairSet

        loaded = load_on_worker(model_name, device, threads)
        self.intervention = intervention
        if task == "sts":
            pairs = PairSet(loaded, dev, intervention.norm_layer, observe=True)
            self.baseline = pairs.baseline_spearman
            self.value = lambda head: calibrate.sts_head_value(pairs, intervention, head)
        else:
            runs = run_chunks(loaded, dev, max_tokens, intervention.norm_layer)
            self.baseline = calibrate.nll_baseline(runs, intervention)
            self.value = lambda head: calibrate.nll_head_value(runs, intervention, head)

    def __call__(self, batch: dict) -> dict:
        heads = list(zip(batch["layer"].tolist(), batch["head"].tolist()))
        return {"layer": batch["layer"], "head": batch["head"],
                "value": np.asarray([self.value(head) for head in heads], dtype=np.float64),
                "baseline": np.full(len(heads), self.baseline, dtype=np.float64)}


def ray_scorer(model_name: str, task: str, dev: object | Sequence[str], intervention, options: RayOptions,
               max_tokens: int = 256, progress: Step | None = None) -> HeadScorer:
    """A HeadScorer that runs each head as one Ray Data task on ``options.workers`` actors."""

    def score(heads: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[float, float]]:
        if not heads:
            return {}
        import ray
        import ray.data

        started = connect(options)
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            dataset = ray.data.from_items([{"layer": layer, "head": head} for layer, head in heads],
                                          override_num_blocks=len(heads))
            results = dataset.map_batches(
                HeadScorerActor, batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=options.workers),
                num_gpus=options.gpus_per_worker, num_cpus=options.cpus_per_worker,
                fn_constructor_args=(model_name, task, dev, intervention, max_tokens, options.device, options.threads))
            scores = {}
            tick = counter(progress, len(heads), f"head search ({task} dev, ray)")
            for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                for layer, head, value, base in zip(batch["layer"], batch["head"], batch["value"], batch["baseline"]):
                    scores[(int(layer), int(head))] = (float(value), float(base))
                tick(len(batch["layer"]))
            return scores
        finally:
            if started:
                ray.shutdown()

    return score
