-- The deploy engine: what a stage replaced (for rollback), and the durable
-- jobs the engine works through. A job is claimed with a lease; a job whose
-- lease ran out (its server died) is taken over by another worker.

ALTER TABLE stage_runs ADD COLUMN replaced_template TEXT;
ALTER TABLE stage_runs ADD COLUMN restored_revision TEXT;

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('deploy', 'rollback')),
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    stage_position INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'done')),
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- One live job per stage run: a stage is driven by one job at a time.
CREATE UNIQUE INDEX jobs_one_queued_per_stage ON jobs (work_order_id, stage_position)
    WHERE state = 'queued';
CREATE INDEX jobs_due_idx ON jobs (state, run_at, id);
CREATE INDEX jobs_work_order_idx ON jobs (work_order_id, id);
