-- An order's approvals counted on its row (issue 12). Every list of orders
-- showed the count by counting the order's approvals once per order
-- listed; now the count comes with the row. A trigger keeps it, whatever
-- writes the approvals.
ALTER TABLE work_orders ADD COLUMN approval_count BIGINT NOT NULL DEFAULT 0;
UPDATE work_orders w SET approval_count = c.n
FROM (
    SELECT work_order_id, COUNT(*) AS n FROM approvals
    WHERE decision = 'approved' GROUP BY work_order_id
) c
WHERE c.work_order_id = w.id;
CREATE FUNCTION approvals_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.decision = 'approved' THEN
            UPDATE work_orders SET approval_count = approval_count - 1 WHERE id = OLD.work_order_id;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.decision = 'approved' THEN
            UPDATE work_orders SET approval_count = approval_count + 1 WHERE id = NEW.work_order_id;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER approvals_count AFTER INSERT OR UPDATE OR DELETE ON approvals
    FOR EACH ROW EXECUTE FUNCTION approvals_count();
