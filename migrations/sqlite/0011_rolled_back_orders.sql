-- Work orders can end rolled back: `rolled_back` when every stage that
-- deployed was rolled back, `partially_rolled_back` when some stage still
-- runs the order's version. Both are finished states, so rule 1's index
-- (one open order per item) is unchanged.
--
-- SQLite cannot change a CHECK, so the table is rebuilt with its indexes
-- and triggers. Other tables refer to work_orders: the server runs SQLite
-- migrations with foreign keys off and checks them all afterwards, as
-- SQLite's own procedure for such changes asks (db::Db::migrate).
CREATE TABLE work_orders_0011 (
    id INTEGER PRIMARY KEY,
    release_item_id INTEGER NOT NULL REFERENCES release_items (id),
    node_id INTEGER NOT NULL REFERENCES nodes (id),
    version TEXT NOT NULL,
    image TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('pending_approval', 'approved', 'in_progress', 'succeeded', 'failed',
        'rolled_back', 'partially_rolled_back', 'rejected', 'closed')),
    creator_id INTEGER NOT NULL REFERENCES accounts (id),
    required_approvals INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO work_orders_0011 (id, release_item_id, node_id, version, image, title, description, state,
    creator_id, required_approvals, created_at, updated_at)
SELECT id, release_item_id, node_id, version, image, title, description, state,
    creator_id, required_approvals, created_at, updated_at
FROM work_orders;
DROP TABLE work_orders;
ALTER TABLE work_orders_0011 RENAME TO work_orders;

-- Rule 1, enforced by the database: one open work order per release item.
CREATE UNIQUE INDEX work_orders_one_open_per_item ON work_orders (release_item_id)
    WHERE state IN ('pending_approval', 'approved', 'in_progress', 'failed');
CREATE INDEX work_orders_state_idx ON work_orders (state, id);
CREATE INDEX work_orders_item_idx ON work_orders (release_item_id, id);
CREATE INDEX work_orders_node_idx ON work_orders (node_id, id);
CREATE INDEX work_orders_creator_idx ON work_orders (creator_id, id);
CREATE INDEX work_orders_node_state_idx ON work_orders (node_id, state, id);
CREATE INDEX work_orders_item_state_idx ON work_orders (release_item_id, state, id);

-- The inbox version triggers of 0010, dropped with the old table.
CREATE TRIGGER work_orders_inbox_insert AFTER INSERT ON work_orders
BEGIN
    UPDATE inbox_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER work_orders_inbox_update AFTER UPDATE OF state, node_id, creator_id ON work_orders
WHEN OLD.state IS NOT NEW.state OR OLD.node_id IS NOT NEW.node_id OR OLD.creator_id IS NOT NEW.creator_id
BEGIN
    UPDATE inbox_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER work_orders_inbox_delete AFTER DELETE ON work_orders
BEGIN
    UPDATE inbox_state SET version = version + 1 WHERE id = 1;
END;

-- Orders finished before this migration whose deployed stages were rolled
-- back said `succeeded` or `failed`; they now say what happened, with a
-- timeline entry saying why their state changed. An order with a stage
-- still failed or in flight keeps its state (it still needs a decision).
CREATE TEMPORARY TABLE relabel_0011 AS
SELECT w.id, w.state AS was,
       CASE WHEN EXISTS (SELECT 1 FROM stage_runs s WHERE s.work_order_id = w.id AND s.status = 'succeeded')
            THEN 'partially_rolled_back' ELSE 'rolled_back' END AS now_state
FROM work_orders w
WHERE w.state IN ('succeeded', 'failed')
  AND EXISTS (SELECT 1 FROM stage_runs s WHERE s.work_order_id = w.id AND s.status = 'rolled_back')
  AND NOT EXISTS (SELECT 1 FROM stage_runs s WHERE s.work_order_id = w.id
                  AND s.status IN ('failed', 'deploying', 'verifying', 'paused', 'rolling_back'));

INSERT INTO timeline_events (work_order_id, at, actor_id, actor, kind, message, stage_position)
SELECT r.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), NULL, 'system', 'state_corrected',
       'the order said ' || r.was || ' after its rollback; it is ' || replace(r.now_state, '_', ' '), NULL
FROM relabel_0011 r;

UPDATE work_orders SET state = (SELECT r.now_state FROM relabel_0011 r WHERE r.id = work_orders.id),
       updated_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE id IN (SELECT r.id FROM relabel_0011 r);

DROP TABLE relabel_0011;
