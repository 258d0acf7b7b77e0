-- board_state.version now also covers what an order's page and the lists
-- of orders read, so a page or an API answer read under one version can
-- be served again until it moves on (db::board): any change to an order's
-- row, its approvals, its stage runs as the page shows them, and its
-- timeline. Reads that show a new column of these tables must add it to
-- the `WHEN` lists below.
--
-- Updates that change nothing shown (the state machine's row lock,
-- `SET updated_at = updated_at`; the engine's deadlines and ids) do not
-- move the version: row triggers compare what the pages read.
DROP TRIGGER work_orders_board ON work_orders;
CREATE TRIGGER work_orders_board AFTER INSERT OR DELETE ON work_orders
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER work_orders_board_update AFTER UPDATE ON work_orders
    FOR EACH ROW WHEN (
        (OLD.release_item_id, OLD.node_id, OLD.version, OLD.image, OLD.title, OLD.description, OLD.state,
         OLD.creator_id, OLD.required_approvals, OLD.created_at, OLD.updated_at)
        IS DISTINCT FROM
        (NEW.release_item_id, NEW.node_id, NEW.version, NEW.image, NEW.title, NEW.description, NEW.state,
         NEW.creator_id, NEW.required_approvals, NEW.created_at, NEW.updated_at)
    ) EXECUTE FUNCTION board_state_bump();

DROP TRIGGER stage_runs_board ON stage_runs;
CREATE TRIGGER stage_runs_board AFTER INSERT OR DELETE ON stage_runs
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER stage_runs_board_update AFTER UPDATE ON stage_runs
    FOR EACH ROW WHEN (
        (OLD.work_order_id, OLD.position, OLD.name, OLD.app_id, OLD.strategy, OLD.canary_json, OLD.status,
         OLD.replaced_image, OLD.replaced_revision, OLD.new_revision, OLD.restored_revision,
         OLD.started_at, OLD.finished_at, OLD.message, OLD.rollback_from)
        IS DISTINCT FROM
        (NEW.work_order_id, NEW.position, NEW.name, NEW.app_id, NEW.strategy, NEW.canary_json, NEW.status,
         NEW.replaced_image, NEW.replaced_revision, NEW.new_revision, NEW.restored_revision,
         NEW.started_at, NEW.finished_at, NEW.message, NEW.rollback_from)
    ) EXECUTE FUNCTION board_state_bump();

CREATE TRIGGER approvals_board AFTER INSERT OR UPDATE OR DELETE ON approvals
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER timeline_events_board AFTER INSERT OR UPDATE OR DELETE ON timeline_events
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
-- Names shown on orders (creator, approvers).
CREATE TRIGGER accounts_board AFTER UPDATE OF name ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();

-- The two version rows are taken in one order: whatever moves the inbox
-- moves the board first, in the same function, so two transactions never
-- hold one row each while waiting for the other.
CREATE OR REPLACE FUNCTION inbox_state_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
    UPDATE inbox_state SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
