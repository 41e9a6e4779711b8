"""The one progress reporter (sinkfix.progress.Progress) in its two modes, and the dashboard's adapter.

Off a terminal (logs, pipes): a line at each stage, at most one every 30 s within it, no carriage
return. On a terminal: a tqdm bar with the rate and the time left. Time is a fake clock here.
"""
from __future__ import annotations

import io


from dashboard.progress import StatusProgress
from sinkfix import progress as progress_module
from sinkfix.progress import Progress, counter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_each_stage_is_a_line_then_at_most_one_every_30_s() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(stream=out, clock=clock) as bar:
        for t, done, what in [(0, 1, "softmax seed 0"), (1, 2, "softmax seed 0"), (2, 3, "softmax seed 0"),
                              (40, 4, "softmax seed 0"), (41, 5, "relu seed 0"), (42, 6, "relu seed 0")]:
            clock.now = t
            bar(done, 6, what)
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "... softmax seed 0: 1/6",                                  # t=0: a new stage
        "... softmax seed 0: 4/6 (0.075 step/s, about 27 s left)",  # t=40: 30 s since the last line; 3 steps in 40 s
        "... relu seed 0: 5/6",                                     # t=41: a new stage
        "... relu seed 0: 6/6 (1 s)",                               # closed: the last count, which was quiet
    ]


def test_off_a_terminal_a_corpus_counts_from_what_was_stored_and_stage_messages_are_lines() -> None:
    out, clock = io.StringIO(), Clock()
    bar = Progress("corpus pets", 10, unit="line", initial=4, stream=out, clock=clock)
    bar.stage("loading minilm")
    clock.now = 120.0
    bar.advance(3)  # 3 lines in 120 s: 2 min for the last 3
    bar.advance(3)  # same moment: quiet
    bar.close()
    assert out.getvalue().splitlines() == [
        "... corpus pets: 4/10", "... loading minilm", "... corpus pets: 7/10 (0.025 line/s, about 2 min left)",
        "... corpus pets: 10/10 (2 min)",
    ]


def test_disabled_shows_nothing() -> None:
    out = io.StringIO()
    with Progress("corpus pets", 3, stream=out, enabled=False) as bar:
        bar.stage("loading")
        bar.advance(3)
    assert out.getvalue() == ""


def test_on_a_terminal_a_tqdm_bar_with_rate_and_time_left() -> None:
    out = io.StringIO()
    bar = Progress(stream=out, terminal=True, leave=True, unit="step")
    bar.stage("loading the model")
    for done in range(1, 5):
        bar(done, 4, "evaluate")
    bar.close()
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "loading the model" in text
    final = text.split("\r")[-1]
    assert final.startswith("evaluate: 100%") and "4/4" in final
    assert "step/s" in final or "s/step" in final  # the rate
    assert "<00:00" in final  # elapsed<remaining


def test_on_a_terminal_a_new_total_starts_a_new_bar() -> None:
    out = io.StringIO()
    with Progress(stream=out, terminal=True) as bar:
        bar(3, 3, "embed (clean)")
        first = bar._bar
        bar(1, 10, "head search (STS dev)")
        assert bar._bar is not first and bar._bar.total == 10 and bar._bar.n == 1
        bar(2, 10, "head search (STS dev)")
        assert bar._bar.n == 2


def test_counter_steps_a_callback_and_is_a_no_op_without_one() -> None:
    seen: list[tuple[int, int, str]] = []
    tick = counter(lambda *event: seen.append(event), 5, "evaluate")
    tick()
    tick(3)
    assert seen == [(1, 5, "evaluate"), (4, 5, "evaluate")]
    counter(None, 5, "evaluate")()  # nothing to call


def test_the_isatty_check_of_a_real_stream() -> None:
    assert progress_module._isatty(io.StringIO()) is False


class FakeBar:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def progress(self, value: float, text: str) -> None:
        self.calls.append((value, text))


class FakeStatus:
    """What StatusProgress uses of an st.status box."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.bar = FakeBar()

    def progress(self, value: float, text: str) -> FakeBar:
        self.bar.progress(value, text)
        return self.bar

    def write(self, message: str) -> None:
        self.lines.append(message)


def test_the_dashboard_takes_the_same_events_throttled_to_the_browser() -> None:
    status, clock = FakeStatus(), Clock()
    reporter = StatusProgress(status, unit=" forward passes", every=0.25, clock=clock)
    reporter.stage("minilm loaded")
    reporter(1, 4, "evaluate")   # a new stage: drawn
    reporter(2, 4, "evaluate")   # same instant: skipped
    clock.now = 0.3
    reporter(3, 4, "evaluate")   # 0.3 s later: drawn
    reporter(4, 4, "evaluate")   # the last step: always drawn
    reporter(1, 2, "sweep")      # a new stage: drawn
    assert status.lines == ["minilm loaded"]
    assert status.bar.calls == [
        (0.0, "loading the model"), (0.25, "evaluate: 1 of 4 forward passes"), (0.75, "evaluate: 3 of 4 forward passes"),
        (1.0, "evaluate: 4 of 4 forward passes"), (0.5, "sweep: 1 of 2 forward passes"),
    ]


def test_an_analysis_counts_its_layers_on_the_dashboards_bar(minilm) -> None:
    """The Analyze page and the drill-down's recompute hand ``analyze`` the reporter's ``layers``."""
    from sinkfix.analysis.pipeline import analyze

    status = FakeStatus()
    analyze("The cat sat on the mat.", minilm, progress=StatusProgress(status, unit=" layers", every=0.0).layers)
    assert status.bar.calls[-1] == (1.0, f"layers: {minilm.n_layers} of {minilm.n_layers} layers")
    fractions = [value for value, _ in status.bar.calls[1:]]
    assert len(fractions) >= minilm.n_layers and fractions == sorted(fractions)  # one step per layer, forward
