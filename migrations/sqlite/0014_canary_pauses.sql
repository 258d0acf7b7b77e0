-- Canary stages (OpenKruise Rollout): the step a paused stage waits at
-- (1-based; NULL unless the stage is paused). Pages show it, so the board
-- version follows it (see 0013).
ALTER TABLE stage_runs ADD COLUMN paused_step INTEGER;

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
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
