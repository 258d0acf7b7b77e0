-- What a stage last ran, by app: the dashboard and an item's status read
-- each stage's newest order that touched its app, walking that app's stage
-- runs newest first (a handful of items share an app) instead of the
-- item's whole order history.
CREATE INDEX stage_runs_app_idx ON stage_runs (app_id, work_order_id);
