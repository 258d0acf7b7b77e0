-- Two release-item settings the engine needs to end a stage for sure:
-- a stage's overall deadline in minutes (NULL: twice the Deployment's
-- progress deadline), copied into the stage run when an order is filed
-- so an edit does not change an order in flight; and whether a
-- Deployment scaled to zero replicas is refused up front (0: deployed,
-- with nothing to verify).

ALTER TABLE release_stages ADD COLUMN deadline_minutes BIGINT
    CHECK (deadline_minutes >= 1 AND deadline_minutes <= 1440);
ALTER TABLE release_items ADD COLUMN refuse_zero_replicas BIGINT NOT NULL DEFAULT 0
    CHECK (refuse_zero_replicas IN (0, 1));
ALTER TABLE stage_runs ADD COLUMN deadline_minutes BIGINT
    CHECK (deadline_minutes >= 1 AND deadline_minutes <= 1440);
