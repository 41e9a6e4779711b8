"""The training lab: small decoders with swappable attention, trained to see why sinks form.

``run_lab(LabSettings(task="backcopy", variants=("softmax", "relu"), seeds=3))`` trains each
(variant, seed), measures Sink₁^ε, first-token mass, the massive-activation ratio, the sink's value
norm and the validation loss at checkpoints, and returns means and 95% CIs over seeds. Each trained
model is saved as an ordinary model directory that ``sinkfix.load_model`` opens. See docs/lab.md.

Modules, one job each: ``variants`` (what each variant changes, the papers' claims), ``architecture``
(the transformers model), ``backcopy`` and ``tasks`` (data), ``vocab`` (tokenizers), ``measure``
(checkpoint metrics), ``train`` (one run), ``checkpoint`` (state on disk), ``settings``, ``summary``
(CIs over seeds) and ``runner`` (the sweep).
"""
