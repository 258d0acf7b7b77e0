-- Read paths that stay fast as history grows.
--
-- inbox_state.version changes whenever something that decides "waiting for
-- my approval" may have changed: an order filed, deleted, or changing
-- state, node or creator; an approval added, changed or removed. Sessions
-- read it with their own row, so every replica knows at once when a
-- per-account count it keeps (the header badge) is out of date. Triggers
-- keep it, so no write path can forget it.
CREATE TABLE inbox_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO inbox_state (id, version) VALUES (1, 0);

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
CREATE TRIGGER approvals_inbox_insert AFTER INSERT ON approvals
BEGIN
    UPDATE inbox_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER approvals_inbox_update AFTER UPDATE ON approvals
BEGIN
    UPDATE inbox_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER approvals_inbox_delete AFTER DELETE ON approvals
BEGIN
    UPDATE inbox_state SET version = version + 1 WHERE id = 1;
END;

-- A state filter within one node or one release item reads that node's or
-- item's orders of that state, newest first, and nothing else (without
-- these, a filtered page scanned every order of the state and its cost grew
-- with history).
CREATE INDEX work_orders_node_state_idx ON work_orders (node_id, state, id);
CREATE INDEX work_orders_item_state_idx ON work_orders (release_item_id, state, id);
