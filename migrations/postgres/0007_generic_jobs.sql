-- Jobs of any kind: a job names its kind (free text: the engine runs the
-- kinds it has registered and claims no other) and its subject, the thing
-- it works on, by type and id (a stage run today; a fast-path deployment or
-- a notification delivery next). work_order_id and stage_position stay,
-- now optional, for jobs that belong to a work order. At most one queued
-- job per subject. Jobs queued or running before this migration carry on:
-- their subject is their stage run, their lease is kept.

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ALTER COLUMN work_order_id DROP NOT NULL;
ALTER TABLE jobs ALTER COLUMN stage_position DROP NOT NULL;
ALTER TABLE jobs ADD COLUMN subject_kind TEXT;
ALTER TABLE jobs ADD COLUMN subject_id BIGINT;

-- A job without its stage run keeps subject_id NULL and stops the
-- migration below rather than losing the job.
UPDATE jobs SET subject_kind = 'stage_run', subject_id = (
    SELECT s.id FROM stage_runs s
    WHERE s.work_order_id = jobs.work_order_id AND s.position = jobs.stage_position
);
ALTER TABLE jobs ALTER COLUMN subject_kind SET NOT NULL;
ALTER TABLE jobs ALTER COLUMN subject_id SET NOT NULL;
-- A stage run's job names its order and stage.
ALTER TABLE jobs ADD CONSTRAINT jobs_stage_run_subject CHECK (
    subject_kind <> 'stage_run' OR (work_order_id IS NOT NULL AND stage_position IS NOT NULL)
);

-- One live job per subject: a stage run is driven by one job at a time.
DROP INDEX jobs_one_queued_per_stage;
CREATE UNIQUE INDEX jobs_one_queued_per_subject ON jobs (subject_kind, subject_id)
    WHERE state = 'queued';
