-- The last order of each release item that did something on each app:
-- what the dashboard shows as "the last order that touched the stage".
-- Read by primary key, one row per stage, however long the history is
-- (it was a walk over the item's orders, newest first, per stage).
--
-- Triggers keep it: a stage run that leaves `pending` (or is written past
-- it) makes its order the head when it is newer than the one there.
-- Stage runs never return to `pending`, and orders are never deleted.
CREATE TABLE stage_heads (
    release_item_id INTEGER NOT NULL REFERENCES release_items (id),
    app_id INTEGER NOT NULL REFERENCES apps (id),
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    PRIMARY KEY (release_item_id, app_id)
) WITHOUT ROWID;

CREATE TRIGGER stage_runs_head_insert AFTER INSERT ON stage_runs
WHEN NEW.status <> 'pending'
BEGIN
    INSERT INTO stage_heads (release_item_id, app_id, work_order_id)
    SELECT w.release_item_id, NEW.app_id, NEW.work_order_id FROM work_orders w WHERE w.id = NEW.work_order_id
    ON CONFLICT (release_item_id, app_id) DO UPDATE SET work_order_id = excluded.work_order_id
    WHERE stage_heads.work_order_id < excluded.work_order_id;
END;
CREATE TRIGGER stage_runs_head_update AFTER UPDATE OF status ON stage_runs
WHEN NEW.status <> 'pending'
BEGIN
    INSERT INTO stage_heads (release_item_id, app_id, work_order_id)
    SELECT w.release_item_id, NEW.app_id, NEW.work_order_id FROM work_orders w WHERE w.id = NEW.work_order_id
    ON CONFLICT (release_item_id, app_id) DO UPDATE SET work_order_id = excluded.work_order_id
    WHERE stage_heads.work_order_id < excluded.work_order_id;
END;

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
    version INTEGER NOT NULL
);
INSERT INTO board_state (id, version) VALUES (1, 0);

CREATE TRIGGER release_items_board_insert AFTER INSERT ON release_items
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER release_items_board_update AFTER UPDATE ON release_items
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER release_items_board_delete AFTER DELETE ON release_items
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER release_stages_board_insert AFTER INSERT ON release_stages
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER release_stages_board_update AFTER UPDATE ON release_stages
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER release_stages_board_delete AFTER DELETE ON release_stages
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER apps_board_insert AFTER INSERT ON apps
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER apps_board_update AFTER UPDATE ON apps
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER apps_board_delete AFTER DELETE ON apps
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER clusters_board_update AFTER UPDATE ON clusters
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER clusters_board_delete AFTER DELETE ON clusters
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER nodes_board_update AFTER UPDATE OF path ON nodes
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER nodes_board_delete AFTER DELETE ON nodes
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER stage_heads_board_insert AFTER INSERT ON stage_heads
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER stage_heads_board_update AFTER UPDATE ON stage_heads
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER stage_heads_board_delete AFTER DELETE ON stage_heads
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER stage_runs_board_update AFTER UPDATE OF status ON stage_runs
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER work_orders_board_insert AFTER INSERT ON work_orders
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER work_orders_board_delete AFTER DELETE ON work_orders
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER work_orders_board_update AFTER UPDATE OF state, version ON work_orders
WHEN OLD.state IS NOT NEW.state OR OLD.version IS NOT NEW.version
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
-- The GitLab URL: the dashboard links each running tag to its tag page.
CREATE TRIGGER settings_board_insert AFTER INSERT ON settings
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER settings_board_update AFTER UPDATE ON settings
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER settings_board_delete AFTER DELETE ON settings
BEGIN
    UPDATE board_state SET version = version + 1 WHERE id = 1;
END;
