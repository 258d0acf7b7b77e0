-- Verification of fast-path deployments (issue 16): a deployment takes the
-- verification plan of the release stages on its app (merged: every gate
-- and smoke check, the longest soak), copied when it is asked for so an
-- edit does not change a deployment in flight, and runs it once its
-- rollout is available (remembered in verify_started_at, so a job resumed
-- after a restart goes on where it was); replaced_revision names the
-- revision it replaced, whose pods a template calls old. Each measurement of a gate and
-- each attempt of a smoke check is one row of deployment_checks, written
-- once, like a stage's verify_results.
ALTER TABLE deployments ADD COLUMN verify_json TEXT;
ALTER TABLE deployments ADD COLUMN verify_started_at INTEGER;
ALTER TABLE deployments ADD COLUMN replaced_revision TEXT;
-- deployment_checks: source_index is the gate or smoke request of the plan
-- (from 0), seq the measurement or attempt (from 1), value the sample
-- furthest on the wrong side of the threshold (a gate) or the HTTP status
-- (a smoke request), asked the filled query or URL.
CREATE TABLE deployment_checks (
    id INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('gate', 'smoke')),
    source_index INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'fail', 'inconclusive')),
    value REAL,
    detail TEXT NOT NULL DEFAULT '',
    asked TEXT NOT NULL DEFAULT '',
    UNIQUE (deployment_id, source, source_index, seq)
);
