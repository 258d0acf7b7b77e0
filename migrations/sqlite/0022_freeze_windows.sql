-- Freeze windows (issue 17): times when a node's subtree takes no deploys.
-- A window is one-off (starts_at–ends_at, Unix ms) or recurring (a cron
-- expression for its start and one for its end, read in an IANA time
-- zone: active between the latest start and the next end), limited to
-- some environment classes or not (environments: a comma list; '' = all).
-- A work order filed as a hotfix (hotfix_reason) may deploy through a
-- window once an owner of the window's node (or an admin) overrode it for
-- that order: one freeze_overrides row per order and window, written with
-- its timeline event.
CREATE TABLE freeze_windows (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    starts_at INTEGER,
    ends_at INTEGER,
    cron_start TEXT,
    cron_end TEXT,
    time_zone TEXT,
    environments TEXT NOT NULL DEFAULT '',
    created_by_id INTEGER REFERENCES accounts (id),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    CHECK ((starts_at IS NOT NULL AND ends_at IS NOT NULL AND cron_start IS NULL AND cron_end IS NULL AND time_zone IS NULL)
        OR (starts_at IS NULL AND ends_at IS NULL AND cron_start IS NOT NULL AND cron_end IS NOT NULL AND time_zone IS NOT NULL))
);
CREATE INDEX freeze_windows_node_idx ON freeze_windows (node_id);

ALTER TABLE work_orders ADD COLUMN hotfix_reason TEXT;

CREATE TABLE freeze_overrides (
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    window_id INTEGER NOT NULL REFERENCES freeze_windows (id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    at INTEGER NOT NULL,
    PRIMARY KEY (work_order_id, window_id)
);
