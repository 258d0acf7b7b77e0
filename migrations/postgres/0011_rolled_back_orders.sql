-- Work orders can end rolled back: `rolled_back` when every stage that
-- deployed was rolled back, `partially_rolled_back` when some stage still
-- runs the order's version. Both are finished states, so rule 1's index
-- (one open order per item) is unchanged.
ALTER TABLE work_orders DROP CONSTRAINT work_orders_state_check;
ALTER TABLE work_orders ADD CONSTRAINT work_orders_state_check CHECK (state IN (
    'pending_approval', 'approved', 'in_progress', 'succeeded', 'failed',
    'rolled_back', 'partially_rolled_back', 'rejected', 'closed'));

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
SELECT r.id, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT, NULL, 'system', 'state_corrected',
       'the order said ' || r.was || ' after its rollback; it is ' || replace(r.now_state, '_', ' '), NULL
FROM relabel_0011 r;

UPDATE work_orders SET state = (SELECT r.now_state FROM relabel_0011 r WHERE r.id = work_orders.id),
       updated_at = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
WHERE id IN (SELECT r.id FROM relabel_0011 r);

DROP TABLE relabel_0011;
