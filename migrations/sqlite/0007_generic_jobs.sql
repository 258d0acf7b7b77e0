-- Jobs of any kind: a job names its kind (free text: the engine runs the
-- kinds it has registered and claims no other) and its subject, the thing
-- it works on, by type and id (a stage run today; a fast-path deployment or
-- a notification delivery next). work_order_id and stage_position stay,
-- now optional, for jobs that belong to a work order. At most one queued
-- job per subject. Jobs queued or running before this migration carry on:
-- their subject is their stage run, their lease is kept.
--
-- SQLite cannot drop a CHECK or a NOT NULL, so the table is rebuilt (its
-- new columns last, as PostgreSQL adds them).

CREATE TABLE jobs_0007 (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    work_order_id INTEGER REFERENCES work_orders (id),
    stage_position INTEGER,
    state TEXT NOT NULL CHECK (state IN ('queued', 'done')),
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id INTEGER NOT NULL,
    -- A stage run's job names its order and stage.
    CONSTRAINT jobs_stage_run_subject CHECK (
        subject_kind <> 'stage_run' OR (work_order_id IS NOT NULL AND stage_position IS NOT NULL)
    )
);

-- A job without its stage run leaves subject_id NULL and stops the
-- migration rather than losing the job.
INSERT INTO jobs_0007 (id, kind, work_order_id, stage_position, state, attempts, run_at,
    lease_owner, lease_until, last_error, created_at, updated_at, subject_kind, subject_id)
SELECT j.id, j.kind, j.work_order_id, j.stage_position, j.state, j.attempts, j.run_at,
    j.lease_owner, j.lease_until, j.last_error, j.created_at, j.updated_at, 'stage_run',
    (SELECT s.id FROM stage_runs s WHERE s.work_order_id = j.work_order_id AND s.position = j.stage_position)
FROM jobs j;

DROP TABLE jobs;
ALTER TABLE jobs_0007 RENAME TO jobs;

-- One live job per subject: a stage run is driven by one job at a time.
CREATE UNIQUE INDEX jobs_one_queued_per_subject ON jobs (subject_kind, subject_id)
    WHERE state = 'queued';
CREATE INDEX jobs_due_idx ON jobs (state, run_at, id);
CREATE INDEX jobs_work_order_idx ON jobs (work_order_id, id);
