-- The results store, schema 1 (SQLite). Keep in step with
-- ../postgres/0001_init.sql: same tables, same columns, same meaning.

-- What this database is and which schema it has.
CREATE TABLE lnst_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every migration applied, with when.
CREATE TABLE lnst_migrations (
    version INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    applied TEXT NOT NULL
);

-- One row per run (or per imported run directory).
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    -- controller host + run directory + start: a run recorded twice
    -- (`import` of a directory `run` already recorded) is one run.
    uid             TEXT NOT NULL UNIQUE,
    recipe          TEXT NOT NULL,
    recipe_hash     TEXT NOT NULL,
    params          TEXT NOT NULL,
    mapping         TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    controller_host TEXT NOT NULL,
    lnst_version    TEXT NOT NULL,
    started         TEXT NOT NULL,
    started_unix    REAL NOT NULL,
    duration        REAL NOT NULL,
    result          TEXT NOT NULL,
    run_dir         TEXT NOT NULL,
    pool            TEXT NOT NULL,
    imported        INTEGER NOT NULL
);
CREATE INDEX runs_recipe ON runs (recipe, started_unix);
CREATE INDEX runs_dir ON runs (run_dir);

-- Every result line of a run, in order.
CREATE TABLE results (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx       INTEGER NOT NULL,
    match_idx INTEGER NOT NULL,
    host      TEXT,
    job       INTEGER,
    descr     TEXT NOT NULL,
    result    TEXT NOT NULL,
    note      TEXT,
    data      TEXT NOT NULL,
    at        REAL NOT NULL,
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX results_descr ON results (descr);

-- What is compared with what (report/series.rs SeriesKey).
CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    recipe      TEXT NOT NULL,
    params      TEXT NOT NULL,
    role        TEXT NOT NULL,
    measurement TEXT NOT NULL,
    metric      TEXT NOT NULL,
    unit        TEXT NOT NULL,
    UNIQUE (recipe, params, role, measurement, metric)
);

-- One run's value of one series, with every sample (little-endian f64s).
CREATE TABLE measurements (
    run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    result_idx INTEGER NOT NULL,
    series_id  INTEGER NOT NULL REFERENCES series (id),
    mean       REAL NOT NULL,
    stddev     REAL NOT NULL,
    n          INTEGER NOT NULL,
    samples    BLOB NOT NULL,
    -- 0: invalid (a zero sample, an errored job, its own spread too high):
    -- never part of a baseline.
    valid      INTEGER NOT NULL,
    verdict    TEXT NOT NULL,
    change_pct REAL,
    baseline_n INTEGER NOT NULL,
    PRIMARY KEY (run_id, result_idx, series_id)
);
CREATE INDEX measurements_series ON measurements (series_id, run_id);

-- Each distinct host environment once (a machine's environment is the
-- same run after run until something on it changes), by its SHA-256.
CREATE TABLE host_envs (
    hash TEXT PRIMARY KEY,
    env  TEXT NOT NULL
);

-- Each host's environment at session start (environment.json's entries).
CREATE TABLE environments (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    host     TEXT NOT NULL,
    machine  TEXT NOT NULL,
    kernel   TEXT NOT NULL,
    env_hash TEXT NOT NULL REFERENCES host_envs (hash),
    PRIMARY KEY (run_id, host)
);
