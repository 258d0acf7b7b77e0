-- Canary stages (OpenKruise Rollout): the step a paused stage waits at
-- (1-based; NULL unless the stage is paused). Pages show it, so the board
-- version follows it (see 0013).
ALTER TABLE stage_runs ADD COLUMN paused_step INTEGER;

DROP TRIGGER stage_runs_board_update ON stage_runs;
CREATE TRIGGER stage_runs_board_update AFTER UPDATE ON stage_runs
    FOR EACH ROW WHEN (
        (OLD.work_order_id, OLD.position, OLD.name, OLD.app_id, OLD.strategy, OLD.canary_json, OLD.status,
         OLD.replaced_image, OLD.replaced_revision, OLD.new_revision, OLD.restored_revision,
         OLD.started_at, OLD.finished_at, OLD.message, OLD.rollback_from, OLD.paused_step)
        IS DISTINCT FROM
        (NEW.work_order_id, NEW.position, NEW.name, NEW.app_id, NEW.strategy, NEW.canary_json, NEW.status,
         NEW.replaced_image, NEW.replaced_revision, NEW.new_revision, NEW.restored_revision,
         NEW.started_at, NEW.finished_at, NEW.message, NEW.rollback_from, NEW.paused_step)
    ) EXECUTE FUNCTION board_state_bump();
