"""The schema, as an append-only list of sqlite-utils migration steps."""
from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from sinkfix.analysis import classify

MIGRATION_SET = "sinkfix"

# Each step is a function of a sqlite_utils Database, applied once, in list order, inside one
# transaction with the others pending. To change the schema, APPEND a step to STEPS; never edit
# or reorder a released step (a database records the names of the steps it has applied, and
# one that names a step this code does not know is refused as "from a newer SinkFix").


def _execute_all(db: Database, statements: list[str]) -> None:
    # Not executescript(): it would COMMIT the surrounding transaction.
    for statement in statements:
        db.execute(statement)


def m001_runs(db: Database) -> None:
    """The first schema: runs, their per-token and per-head rows, and their tensor blobs."""
    _execute_all(db, [
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            cache_key TEXT,
            model TEXT NOT NULL,
            model_id TEXT NOT NULL,
            model_type TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            is_causal INTEGER NOT NULL,
            n_layers INTEGER NOT NULL,
            n_heads INTEGER NOT NULL,
            n_kv_heads INTEGER NOT NULL,
            n_tokens INTEGER NOT NULL,
            text TEXT NOT NULL,
            tokens TEXT NOT NULL,
            token_ids TEXT NOT NULL,
            rule TEXT NOT NULL,
            sink_indices TEXT NOT NULL,
            settings TEXT NOT NULL,
            warnings TEXT NOT NULL,
            timings TEXT NOT NULL,
            truncated INTEGER NOT NULL,
            version TEXT NOT NULL,
            has_maps INTEGER NOT NULL,
            maps_dtype TEXT,
            corrected_stored INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX runs_created_at ON runs (created_at)",
        "CREATE INDEX runs_model ON runs (model, created_at)",
        "CREATE INDEX runs_cache_key ON runs (cache_key)",
        """CREATE TABLE run_tokens (
            run_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            token TEXT NOT NULL,
            att_received REAL NOT NULL,
            value_norm REAL NOT NULL,
            sink_rate REAL NOT NULL,
            label TEXT NOT NULL,
            PRIMARY KEY (run_id, idx)
        ) WITHOUT ROWID""",
        """CREATE TABLE run_heads (
            run_id INTEGER NOT NULL,
            layer INTEGER NOT NULL,
            head INTEGER NOT NULL,
            top_token INTEGER NOT NULL,
            top_token_text TEXT NOT NULL,
            top_alpha REAL NOT NULL,
            entropy REAL NOT NULL,
            token0_share REAL NOT NULL,
            top_contribution_share REAL,
            PRIMARY KEY (run_id, layer, head)
        ) WITHOUT ROWID""",
        """CREATE TABLE run_blobs (
            run_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run_id, name)
        )""",
    ])


def m002_label_counts(db: Database) -> None:
    """Per-run label counts as columns, so listing with a label filter never scans run_tokens."""
    for label in classify.LABELS:
        db.execute(f"ALTER TABLE runs ADD COLUMN n_{label} INTEGER NOT NULL DEFAULT 0")
        db.execute(
            f"UPDATE runs SET n_{label} = "
            f"(SELECT COUNT(*) FROM run_tokens t WHERE t.run_id = runs.id AND t.label = ?)",
            [label],
        )


def m003_corpora(db: Database) -> None:
    """Corpora: named groups of runs (one per input line) made by ``sinkfix batch``, with their summary."""
    _execute_all(db, [
        """CREATE TABLE corpora (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL,
            settings TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            summary TEXT,
            summary_at TEXT
        )""",
        """CREATE TABLE corpus_runs (
            corpus_id INTEGER NOT NULL,
            line_no INTEGER NOT NULL,
            run_id INTEGER NOT NULL,
            PRIMARY KEY (corpus_id, line_no)
        ) WITHOUT ROWID""",
        "CREATE INDEX corpus_runs_run ON corpus_runs (run_id)",
    ])


def m004_evaluations(db: Database) -> None:
    """Intervention results (``sinkfix evaluate`` / ``sts``) and named calibrated head sets
    (``sinkfix calibrate``). Scalars that lists and charts need are columns; the full result is JSON.
    ``run_id`` links an evaluation to the analysis run it was made from, when there is one."""
    _execute_all(db, [
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            target TEXT NOT NULL,
            beta REAL NOT NULL,
            heads TEXT,
            run_id INTEGER,
            baseline REAL,
            intervened REAL,
            delta REAL,
            ci_low REAL,
            ci_high REAL,
            result TEXT NOT NULL
        )""",
        "CREATE INDEX evaluations_model ON evaluations (model, created_at)",
        "CREATE INDEX evaluations_run ON evaluations (run_id)",
        """CREATE TABLE calibrations (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,
            task TEXT NOT NULL,
            metric TEXT NOT NULL,
            kept_heads TEXT NOT NULL,
            dev_baseline REAL,
            heldout_delta REAL,
            result TEXT NOT NULL
        )""",
    ])


def m005_provenance_and_experiments(db: Database) -> None:
    """Where a run ran (device, dtype), which run it re-ran, and the ``experiments`` table.

    Experiments (streaming windows, KV quantisation, the sink-rate protocol, massive activations)
    keep their scalars for listing as columns and their full result as JSON.
    """
    _execute_all(db, [
        "ALTER TABLE runs ADD COLUMN device TEXT",
        "ALTER TABLE runs ADD COLUMN dtype TEXT",
        "ALTER TABLE runs ADD COLUMN parent_run_id INTEGER",
        "ALTER TABLE runs ADD COLUMN offsets TEXT",
        """CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '',
            headline REAL,
            result TEXT NOT NULL
        )""",
        "CREATE INDEX experiments_kind ON experiments (kind, created_at)",
    ])


def m006_kernel(db: Database) -> None:
    """Which attention computation produced a run's statistics: ``runs.kernel`` ("triton" or
    "blocked"; NULL for runs stored before the fused kernels, which were all blocked) and
    ``runs.kernel_reason`` (why a wanted triton run fell back to blocked; NULL otherwise)."""
    _execute_all(db, [
        "ALTER TABLE runs ADD COLUMN kernel TEXT",
        "ALTER TABLE runs ADD COLUMN kernel_reason TEXT",
    ])


def m007_attention_layers(db: Database) -> None:
    """Hybrid models (attention in some layers only): which layers a run's per-layer rows are
    (``runs.attention_layers``, a JSON list of model layer numbers; NULL means every layer), and each
    head's mean attention output gate (``run_heads.gate``; NULL for models without a gate).
    ``run_heads.layer`` and the ``maps/{layer}`` blobs already use model layer numbers."""
    _execute_all(db, [
        "ALTER TABLE runs ADD COLUMN attention_layers TEXT",
        "ALTER TABLE run_heads ADD COLUMN gate REAL",
    ])


OWNED_TABLES = ("runs", "evaluations", "experiments", "corpora", "calibrations")


def m008_owners(db: Database) -> None:
    """Every stored row has an ``owner`` (a signed-in identity, an API token's name, or ``local``) and a
    ``shared`` flag (see sinkfix.policy.ownership). Rows stored before owners existed become ``local``'s,
    unshared. Corpus and calibration names become unique per owner (two visitors may both have a
    corpus named "dev"), so those two tables are rebuilt with UNIQUE (owner, name)."""
    statements = []
    for table in ("runs", "evaluations", "experiments"):
        statements += [f"ALTER TABLE {table} ADD COLUMN owner TEXT NOT NULL DEFAULT 'local'",
                       f"ALTER TABLE {table} ADD COLUMN shared INTEGER NOT NULL DEFAULT 0"]
    statements += [
        "CREATE INDEX runs_owner ON runs (owner, created_at)",
        "CREATE INDEX evaluations_owner ON evaluations (owner, created_at)",
        "CREATE INDEX experiments_owner ON experiments (owner, kind, created_at)",
        """CREATE TABLE corpora_owned (
            id INTEGER PRIMARY KEY,
            owner TEXT NOT NULL DEFAULT 'local',
            shared INTEGER NOT NULL DEFAULT 0,
            name TEXT NOT NULL,
            model TEXT NOT NULL,
            settings TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            summary TEXT,
            summary_at TEXT,
            UNIQUE (owner, name)
        )""",
        "INSERT INTO corpora_owned (id, name, model, settings, source, created_at, summary, summary_at) "
        "SELECT id, name, model, settings, source, created_at, summary, summary_at FROM corpora",
        "DROP TABLE corpora",
        "ALTER TABLE corpora_owned RENAME TO corpora",
        """CREATE TABLE calibrations_owned (
            id INTEGER PRIMARY KEY,
            owner TEXT NOT NULL DEFAULT 'local',
            shared INTEGER NOT NULL DEFAULT 0,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,
            task TEXT NOT NULL,
            metric TEXT NOT NULL,
            kept_heads TEXT NOT NULL,
            dev_baseline REAL,
            heldout_delta REAL,
            result TEXT NOT NULL,
            UNIQUE (owner, name)
        )""",
        "INSERT INTO calibrations_owned (id, name, created_at, model, task, metric, kept_heads, dev_baseline, "
        "heldout_delta, result) SELECT id, name, created_at, model, task, metric, kept_heads, dev_baseline, "
        "heldout_delta, result FROM calibrations",
        "DROP TABLE calibrations",
        "ALTER TABLE calibrations_owned RENAME TO calibrations",
    ]
    _execute_all(db, statements)


STEPS: list[Callable[[Database], None]] = [
    m001_runs, m002_label_counts, m003_corpora, m004_evaluations, m005_provenance_and_experiments, m006_kernel,
    m007_attention_layers, m008_owners,
]


def migrations(steps: list[Callable[[Database], None]] | None = None) -> Migrations:
    """The sqlite-utils Migrations for ``steps`` (default: all of STEPS), in order."""
    result = Migrations(MIGRATION_SET)
    for step in STEPS if steps is None else steps:
        result()(step)
    return result
