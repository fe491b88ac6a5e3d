-- Each match's hosts have their own environment (`--all-matches` maps a
-- host onto a different machine in each match): the key gains the match.
-- SQLite cannot change a primary key in place: the table is rebuilt.
CREATE TABLE environments_new (
    run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    match_idx INTEGER NOT NULL DEFAULT 0,
    host      TEXT NOT NULL,
    machine   TEXT NOT NULL,
    kernel    TEXT NOT NULL,
    env_hash  TEXT NOT NULL REFERENCES host_envs (hash),
    PRIMARY KEY (run_id, match_idx, host)
);
INSERT INTO environments_new (run_id, match_idx, host, machine, kernel, env_hash)
    SELECT run_id, 0, host, machine, kernel, env_hash FROM environments;
DROP TABLE environments;
ALTER TABLE environments_new RENAME TO environments;
