-- The last order of each release item that did something on each app:
-- what the dashboard shows as "the last order that touched the stage".
-- Read by primary key, one row per stage, however long the history is
-- (it was a walk over the item's orders, newest first, per stage).
--
-- A trigger keeps it: a stage run that leaves `pending` (or is written
-- past it) makes its order the head when it is newer than the one there.
-- Stage runs never return to `pending`, and orders are never deleted.
CREATE TABLE stage_heads (
    release_item_id BIGINT NOT NULL REFERENCES release_items (id),
    app_id BIGINT NOT NULL REFERENCES apps (id),
    work_order_id BIGINT NOT NULL REFERENCES work_orders (id),
    PRIMARY KEY (release_item_id, app_id)
);

CREATE FUNCTION stage_heads_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stage_heads (release_item_id, app_id, work_order_id)
    SELECT w.release_item_id, NEW.app_id, NEW.work_order_id FROM work_orders w WHERE w.id = NEW.work_order_id
    ON CONFLICT (release_item_id, app_id) DO UPDATE SET work_order_id = EXCLUDED.work_order_id
    WHERE stage_heads.work_order_id < EXCLUDED.work_order_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER stage_runs_head
    AFTER INSERT OR UPDATE OF status ON stage_runs
    FOR EACH ROW WHEN (NEW.status <> 'pending') EXECUTE FUNCTION stage_heads_touch();

INSERT INTO stage_heads (release_item_id, app_id, work_order_id)
SELECT w.release_item_id, s.app_id, MAX(w.id)
FROM stage_runs s JOIN work_orders w ON w.id = s.work_order_id
WHERE s.status <> 'pending'
GROUP BY w.release_item_id, s.app_id;

-- board_state.version changes whenever anything the dashboard reads from
-- the database may have: release items and their stages, apps, clusters,
-- node paths, stage heads, stage statuses, orders filed or changing state.
-- Sessions read it with their own row; a dashboard page read under one
-- version is served again until it moves on. Triggers keep it, so no
-- write path can forget it.
CREATE TABLE board_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO board_state (id, version) VALUES (1, 0);

CREATE FUNCTION board_state_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER release_items_board AFTER INSERT OR UPDATE OR DELETE ON release_items
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER release_stages_board AFTER INSERT OR UPDATE OR DELETE ON release_stages
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER apps_board AFTER INSERT OR UPDATE OR DELETE ON apps
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER clusters_board AFTER UPDATE OR DELETE ON clusters
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER nodes_board AFTER UPDATE OF path OR DELETE ON nodes
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER stage_heads_board AFTER INSERT OR UPDATE OR DELETE ON stage_heads
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER stage_runs_board AFTER UPDATE OF status ON stage_runs
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
CREATE TRIGGER work_orders_board AFTER INSERT OR DELETE OR UPDATE OF state, version ON work_orders
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
-- The GitLab URL: the dashboard links each running tag to its tag page.
CREATE TRIGGER settings_board AFTER INSERT OR UPDATE OR DELETE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION board_state_bump();
