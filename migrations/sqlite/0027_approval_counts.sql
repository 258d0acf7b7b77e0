-- An order's approvals counted on its row (issue 12). Every list of orders
-- showed the count by reading the approvals index once per order, a page
-- of its own each when an item's orders lie far apart in history (a list
-- of 50 read about 50 more pages than its rows); now the count comes with
-- the row. Triggers keep it, whatever writes the approvals.
ALTER TABLE work_orders ADD COLUMN approval_count INTEGER NOT NULL DEFAULT 0;
UPDATE work_orders SET approval_count = (
    SELECT COUNT(*) FROM approvals ap
    WHERE ap.work_order_id = work_orders.id AND ap.decision = 'approved'
);
CREATE TRIGGER approvals_count_insert AFTER INSERT ON approvals
WHEN NEW.decision = 'approved'
BEGIN
    UPDATE work_orders SET approval_count = approval_count + 1 WHERE id = NEW.work_order_id;
END;
CREATE TRIGGER approvals_count_delete AFTER DELETE ON approvals
WHEN OLD.decision = 'approved'
BEGIN
    UPDATE work_orders SET approval_count = approval_count - 1 WHERE id = OLD.work_order_id;
END;
CREATE TRIGGER approvals_count_update AFTER UPDATE OF work_order_id, decision ON approvals
BEGIN
    UPDATE work_orders SET approval_count = approval_count - 1
    WHERE id = OLD.work_order_id AND OLD.decision = 'approved';
    UPDATE work_orders SET approval_count = approval_count + 1
    WHERE id = NEW.work_order_id AND NEW.decision = 'approved';
END;
