-- board_state.version now also covers what an order's page and the lists
-- of orders read, so a page or an API answer read under one version can
-- be served again until it moves on (db::board): any change to an order's
-- row, its approvals, its stage runs as the page shows them, and its
-- timeline. Reads that show a new column of these tables must add it to
-- the `WHEN` lists below.
--
-- Updates that change nothing shown (the state machine's row lock,
-- `SET updated_at = updated_at`; the engine's deadlines and ids) do not
-- move the version.
DROP TRIGGER work_orders_board_update;
CREATE TRIGGER work_orders_board_update AFTER UPDATE ON work_orders
WHEN OLD.release_item_id IS NOT NEW.release_item_id
   OR OLD.node_id IS NOT NEW.node_id
   OR OLD.version IS NOT NEW.version
   OR OLD.image IS NOT NEW.image
   OR OLD.title IS NOT NEW.title
   OR OLD.description IS NOT NEW.description
   OR OLD.state IS NOT NEW.state
   OR OLD.creator_id IS NOT NEW.creator_id
   OR OLD.required_approvals IS NOT NEW.required_approvals
   OR OLD.created_at IS NOT NEW.created_at
   OR OLD.updated_at IS NOT NEW.updated_at
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
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER stage_runs_board_insert AFTER INSERT ON stage_runs
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER stage_runs_board_delete AFTER DELETE ON stage_runs
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER approvals_board_insert AFTER INSERT ON approvals
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER approvals_board_delete AFTER DELETE ON approvals
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER approvals_board_update AFTER UPDATE ON approvals
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER timeline_events_board_insert AFTER INSERT ON timeline_events
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER timeline_events_board_delete AFTER DELETE ON timeline_events
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER timeline_events_board_update AFTER UPDATE ON timeline_events
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
-- Names shown on orders (creator, approvers).
CREATE TRIGGER accounts_board_update AFTER UPDATE OF name ON accounts
WHEN OLD.name IS NOT NEW.name
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
