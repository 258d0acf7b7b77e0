-- A fast-path deploy under way that a line stop paused (issue 17): the
-- stop whose lift resumes its Deployment, as stage_runs.paused_by_stop is
-- for a stage.
ALTER TABLE deployments ADD COLUMN paused_by_stop INTEGER;
