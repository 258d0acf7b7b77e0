-- Verification (issue 15): a stage's plan (metric gates, smoke checks, a
-- soak time, an owner's sign-off) as JSON on the item's stage, copied into
-- the stage run when an order is filed so an edit does not change an
-- order in flight. A stage run remembers when its verification started,
-- when an owner signed it off and when a person last let it go on past an
-- inconclusive gate. Each measurement of a gate and each attempt of a
-- smoke check is one row of verify_results, written once (the unique key
-- makes a job that resumes after a restart never count one twice).
-- Pages show all of it, so the board version follows it (see 0013).
ALTER TABLE release_stages ADD COLUMN verify_json TEXT;
ALTER TABLE stage_runs ADD COLUMN verify_json TEXT;
ALTER TABLE stage_runs ADD COLUMN verify_started_at INTEGER;
ALTER TABLE stage_runs ADD COLUMN signed_off_at INTEGER;
ALTER TABLE stage_runs ADD COLUMN verify_continued_at INTEGER;

CREATE TABLE verify_results (
    id INTEGER PRIMARY KEY,
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    position INTEGER NOT NULL,
    -- The canary step the result belongs to; 0 after the rollout.
    step INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL CHECK (source IN ('gate', 'smoke')),
    -- Which gate or smoke request of the plan, counted from 0.
    source_index INTEGER NOT NULL,
    -- The measurement or attempt, counted from 1.
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'fail', 'inconclusive')),
    -- A gate: the sample furthest on the wrong side of the threshold; a
    -- smoke request: the HTTP status.
    value REAL,
    -- What was asked, the filled query or URL, is in the plan; this says
    -- what came back.
    detail TEXT NOT NULL DEFAULT '',
    UNIQUE (work_order_id, position, step, source, source_index, seq)
);

CREATE TRIGGER verify_results_board_insert AFTER INSERT ON verify_results
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;

DROP TRIGGER stage_runs_board_update;
CREATE TRIGGER stage_runs_board_update AFTER UPDATE ON stage_runs
WHEN OLD.work_order_id IS NOT NEW.work_order_id
   OR OLD.position IS NOT NEW.position
   OR OLD.name IS NOT NEW.name
   OR OLD.app_id IS NOT NEW.app_id
   OR OLD.strategy IS NOT NEW.strategy
   OR OLD.canary_json IS NOT NEW.canary_json
   OR OLD.status IS NOT NEW.status
   OR OLD.replaced_image IS NOT NEW.replaced_image
   OR OLD.replaced_revision IS NOT NEW.replaced_revision
   OR OLD.new_revision IS NOT NEW.new_revision
   OR OLD.restored_revision IS NOT NEW.restored_revision
   OR OLD.started_at IS NOT NEW.started_at
   OR OLD.finished_at IS NOT NEW.finished_at
   OR OLD.message IS NOT NEW.message
   OR OLD.rollback_from IS NOT NEW.rollback_from
   OR OLD.paused_step IS NOT NEW.paused_step
   OR OLD.verify_json IS NOT NEW.verify_json
   OR OLD.verify_started_at IS NOT NEW.verify_started_at
   OR OLD.signed_off_at IS NOT NEW.signed_off_at
   OR OLD.verify_continued_at IS NOT NEW.verify_continued_at
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
