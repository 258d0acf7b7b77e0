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
