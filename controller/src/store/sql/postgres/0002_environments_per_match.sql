-- Each match's hosts have their own environment (`--all-matches` maps a
-- host onto a different machine in each match): the key gains the match.
ALTER TABLE environments ADD COLUMN match_idx INTEGER NOT NULL DEFAULT 0;
ALTER TABLE environments DROP CONSTRAINT environments_pkey;
ALTER TABLE environments ADD PRIMARY KEY (run_id, match_idx, host);
