-- Stop the line (issue 17): an owner (or an admin) halts a node's subtree
-- at once. While a stop is not lifted (lifted_at NULL), deploys and canary
-- step approvals there are refused, and the engine holds the jobs that
-- would move a rollout on (jobs.held_by names the stop; lifting it runs
-- them at once). With pause_rollouts, a rolling update already under way
-- is paused (spec.paused) and resumed on lift: stage_runs.paused_by_stop
-- names the stop that paused its Deployment. One unlifted stop per node.
CREATE TABLE line_stops (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    pause_rollouts INTEGER NOT NULL DEFAULT 0,
    stopped_by_id INTEGER REFERENCES accounts (id),
    stopped_by TEXT NOT NULL,
    stopped_at INTEGER NOT NULL,
    lifted_by_id INTEGER REFERENCES accounts (id),
    lifted_by TEXT,
    lifted_at INTEGER
);
CREATE UNIQUE INDEX line_stops_one_per_node ON line_stops (node_id) WHERE lifted_at IS NULL;

ALTER TABLE jobs ADD COLUMN held_by INTEGER;
CREATE INDEX jobs_held_by_idx ON jobs (held_by) WHERE held_by IS NOT NULL;

ALTER TABLE stage_runs ADD COLUMN paused_by_stop INTEGER;
