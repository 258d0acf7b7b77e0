-- The audit chain is sealed with a key derived from the secret key
-- (HMAC-SHA256, see backend/src/db/audit.rs), and the database refuses to
-- change or remove audit rows.
--
-- scheme: how the rows are sealed. A log that already holds rows keeps the
-- unkeyed SHA-256 chain of earlier versions until `rollway admin
-- migrate-audit` re-chains it; an empty log starts keyed.
-- key_id: the public name of the key the chain is sealed with ('' until the
-- first row), so a command run with another key is refused.
ALTER TABLE audit_head ADD COLUMN scheme TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE audit_head ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
UPDATE audit_head SET scheme = 'hmac-sha256-v1' WHERE seq = 0;

-- Rows are appended, never changed or removed. (`migrate-audit` drops and
-- recreates audit_log_no_update inside its one transaction; the statement
-- it recreates is the one below, checked by a unit test.)
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;

-- The head only moves forward: its sequence never goes back, a keyed chain
-- never returns to the unkeyed scheme, and its key never changes. Whoever
-- may drop triggers can still move it; against that, the MACs and an anchor
-- kept outside the database (`rollway admin audit-anchor`).
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'audit_head cannot be deleted');
END;
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
WHEN NEW.id <> OLD.id
    OR NEW.seq < OLD.seq
    OR (OLD.scheme = 'hmac-sha256-v1' AND NEW.scheme <> OLD.scheme)
    OR (OLD.key_id <> '' AND NEW.key_id <> OLD.key_id)
BEGIN
    SELECT RAISE(ABORT, 'audit_head only moves forward');
END;
