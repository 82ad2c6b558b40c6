-- The audit tables lose their DEFAULT partitions, so the retention drop can detach a month
-- with DETACH PARTITION ... CONCURRENTLY (PostgreSQL refuses it while a DEFAULT partition
-- exists) instead of taking ACCESS EXCLUSIVE on the table every request writes to.
-- Every row is written at now(); the months it can land in are made ahead instead: the
-- month before this one (a row dated just before midnight UTC on the 1st), this month and
-- the three after it, here, at every `serve` start and by the daily partitions job.
-- Rows already in a DEFAULT partition move into their month's partition first.
DO $$
DECLARE
    t text;
    m date;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_log_sessionauditlog', 'audit_log_deviceauditlog',
                            'audit_log_sessiondevicelinkauditlog', 'audit_log_mfaauditlog'] LOOP
        IF to_regclass(t || '_default') IS NOT NULL THEN
            FOR m IN EXECUTE format('SELECT DISTINCT date_trunc(''month'', created_at AT TIME ZONE ''UTC'')::date FROM %I',
                                    t || '_default') LOOP
                PERFORM audit_log_create_partition(t, m);
            END LOOP;
        END IF;
        FOR i IN -1..3 LOOP
            PERFORM audit_log_create_partition(t, (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date);
        END LOOP;
        IF to_regclass(t || '_default') IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', t, t || '_default');
            EXECUTE format('DROP TABLE %I', t || '_default');
        END IF;
    END LOOP;
END
$$;
