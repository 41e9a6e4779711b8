"""Bigram-Backcopy (Guo et al. 2024, arXiv 2410.13835, §2), generated here.

A sequence is ``<s> x_1 x_2 ... x_T`` over a vocabulary of ``n_tokens`` ordinary tokens, ``n_triggers``
of which are *triggers*:
- x_1 is drawn from the chain's stationary distribution restricted to non-triggers;
- after a non-trigger x_i, x_{i+1} is drawn from the bigram transition row P[x_i] (a Markov chain);
- after a trigger x_i, x_{i+1} = x_{i-1}: the token before the trigger is copied back.

Every target follows the rule (a bigram draw, or an exact copy), so the loss covers every position
after ``<s>``, as Guo et al.'s training code does; the copy positions' loss is reported beside it.
Two triggers are never adjacent: a trigger's successor is a copy of a non-trigger (by induction from
x_1), so the copied token is always an ordinary one.

The transition matrix is fixed per task (``task_seed``), like the paper's: each row is a Dirichlet
draw with concentration ``alpha`` (small alpha: a few likely successors per token, as in text), and
the triggers are the ``n_triggers`` tokens with the highest stationary probability (Guo et al. fix
the triggers as the most frequent tokens; they estimate P from text, here it is drawn at random so
the task needs no data file).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sinkfix.errors import SettingsError

DEFAULT_TOKENS = 64
DEFAULT_TRIGGERS = 3
DEFAULT_ALPHA = 0.1
DEFAULT_TASK_SEED = 0


@dataclass(frozen=True)
class BackcopyChain:
    """The fixed Markov chain of one task: transitions [V, V], stationary distribution [V], triggers."""

    transition: np.ndarray
    stationary: np.ndarray
    triggers: tuple[int, ...]

    @property
    def n_tokens(self) -> int:
        return int(self.transition.shape[0])

    def is_trigger(self) -> np.ndarray:
        mask = np.zeros(self.n_tokens, dtype=bool)
        mask[list(self.triggers)] = True
        return mask


def make_chain(n_tokens: int = DEFAULT_TOKENS, n_triggers: int = DEFAULT_TRIGGERS, alpha: float = DEFAULT_ALPHA,
               task_seed: int = DEFAULT_TASK_SEED) -> BackcopyChain:
    if n_tokens < 4 or not 1 <= n_triggers < n_tokens // 2:
        raise SettingsError(f"backcopy needs at least 4 tokens and 1 to {n_tokens // 2 - 1} triggers, "
                            f"got {n_tokens} tokens and {n_triggers} triggers")
    if alpha <= 0:
        raise SettingsError(f"the Dirichlet concentration must be positive, got {alpha}")
    rng = np.random.default_rng([task_seed, 23])
    transition = rng.dirichlet(np.full(n_tokens, alpha), size=n_tokens)
    # Stationary distribution: the left eigenvector for eigenvalue 1 (a dense chain is ergodic).
    values, vectors = np.linalg.eig(transition.T)
    stationary = np.abs(np.real(vectors[:, np.argmin(np.abs(values - 1))]))
    stationary /= stationary.sum()
    triggers = tuple(int(t) for t in np.argsort(-stationary, kind="stable")[:n_triggers])
    return BackcopyChain(transition, stationary, tuple(sorted(triggers)))


def sample(chain: BackcopyChain, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sequences of ``length`` ordinary-token ids [n, length] (the ``<s>`` prefix is the caller's)."""
    if length < 2:
        raise SettingsError(f"backcopy sequences need at least 2 tokens, got {length}")
    trigger = chain.is_trigger()
    start = np.where(trigger, 0.0, chain.stationary)
    out = np.empty((n, length), dtype=np.int64)
    out[:, 0] = rng.choice(chain.n_tokens, size=n, p=start / start.sum())
    cumulative = np.cumsum(chain.transition, axis=1)
    for i in range(1, length):
        current = out[:, i - 1]
        # Inverse-CDF draws for every row at once; searchsorted per row via the row's cumulative sums.
        u = rng.random(n)[:, None]
        drawn = np.minimum((cumulative[current] < u).sum(axis=1), chain.n_tokens - 1)
        copied = out[:, i - 2] if i >= 2 else drawn
        out[:, i] = np.where(trigger[current], copied, drawn)
    return out


def copy_positions(sequences: np.ndarray, chain: BackcopyChain) -> np.ndarray:
    """bool [n, length]: True where the token is a copy (its predecessor is a trigger)."""
    positions = np.zeros(sequences.shape, dtype=bool)
    positions[:, 1:] = chain.is_trigger()[sequences[:, :-1]]
    return positions
