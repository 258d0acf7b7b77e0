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
