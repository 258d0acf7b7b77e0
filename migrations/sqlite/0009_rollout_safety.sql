-- Rollout safety (the engine never loses track of a rollout).
--
-- stage_runs gains what the engine needs to hold on to one object and to
-- stop in time: the uid of the Deployment its deploy wrote to (a changed
-- uid is a different object: the Deployment was replaced), whether that
-- Deployment was already past its progress deadline before the deploy,
-- the moment the running deploy or rollback must be over (its overall
-- deadline), and for a rollback the status it started from (where a
-- refused rollback returns the stage) and whether an owner asked to
-- restore the whole pod template.
ALTER TABLE stage_runs ADD COLUMN deployment_uid TEXT;
ALTER TABLE stage_runs ADD COLUMN replaced_failing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stage_runs ADD COLUMN deadline_at INTEGER;
ALTER TABLE stage_runs ADD COLUMN rollback_from TEXT;
ALTER TABLE stage_runs ADD COLUMN rollback_whole_template INTEGER NOT NULL DEFAULT 0;

-- One rollout in flight per Deployment (cluster, namespace, name), whatever
-- app or release item points at it: the holder (a stage run today; a CI
-- deployment next) takes the row with its deploy or rollback and gives it
-- back when that ends, in the same transactions as its status changes. The
-- primary key is the lock, so two servers cannot both take it.
CREATE TABLE rollout_locks (
    cluster_id INTEGER NOT NULL REFERENCES clusters (id),
    namespace TEXT NOT NULL,
    deployment TEXT NOT NULL,
    holder_kind TEXT NOT NULL,
    holder_id INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    CONSTRAINT rollout_locks_pkey PRIMARY KEY (cluster_id, namespace, deployment),
    CONSTRAINT rollout_locks_holder_key UNIQUE (holder_kind, holder_id)
);

-- Stages in flight when this migration runs hold their Deployment (where
-- two already drive the same one, the older keeps it).
INSERT INTO rollout_locks (cluster_id, namespace, deployment, holder_kind, holder_id, acquired_at)
SELECT a.cluster_id, a.namespace, a.deployment, 'stage_run', s.id, COALESCE(s.started_at, 0)
FROM stage_runs s JOIN apps a ON a.id = s.app_id
WHERE s.status IN ('deploying', 'verifying', 'paused', 'rolling_back')
ORDER BY s.id
ON CONFLICT DO NOTHING;
