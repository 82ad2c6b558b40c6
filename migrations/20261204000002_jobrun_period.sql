-- Many instances run the same scheduler. The advisory lock only keeps two runs of a job
-- from overlapping; one after the other they would both run in the same period. A scheduled
-- run now first claims its period: a `running` row whose (kind, period_start) is unique
-- among running and succeeded runs, so the first instance of the period wins and the others
-- skip. A failed run, or one abandoned by a crashed instance (marked failed once stale),
-- frees its period for a retry. Runs asked for by hand (CLI, admin) have no period.
ALTER TABLE audit_log_jobrun ADD COLUMN period_start timestamptz;
CREATE UNIQUE INDEX uq_jobrun_period ON audit_log_jobrun (kind, period_start)
    WHERE status IN ('running', 'succeeded');
