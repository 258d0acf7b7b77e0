-- Release items with their stages; work orders with approvals, stage runs
-- and their timeline. Sized for 100k+ work orders: every list filter has an
-- index ending in id, for keyset pages newest first.

CREATE TABLE release_items (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id),
    name TEXT NOT NULL,
    gitlab_project TEXT NOT NULL,
    image_repository TEXT NOT NULL,
    required_approvals INTEGER NOT NULL DEFAULT 1,
    auto_rollback INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT release_items_node_name_key UNIQUE (node_id, name)
);

CREATE TABLE release_stages (
    id INTEGER PRIMARY KEY,
    release_item_id INTEGER NOT NULL REFERENCES release_items (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    app_id INTEGER NOT NULL REFERENCES apps (id),
    strategy TEXT NOT NULL CHECK (strategy IN ('rolling', 'canary')),
    canary_json TEXT,
    CONSTRAINT release_stages_position_key UNIQUE (release_item_id, position)
);
CREATE INDEX release_stages_app_idx ON release_stages (app_id);

CREATE TABLE work_orders (
    id INTEGER PRIMARY KEY,
    release_item_id INTEGER NOT NULL REFERENCES release_items (id),
    node_id INTEGER NOT NULL REFERENCES nodes (id),
    version TEXT NOT NULL,
    image TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('pending_approval', 'approved', 'in_progress', 'succeeded', 'failed', 'rejected', 'closed')),
    creator_id INTEGER NOT NULL REFERENCES accounts (id),
    required_approvals INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- Rule 1, enforced by the database: one open work order per release item.
CREATE UNIQUE INDEX work_orders_one_open_per_item ON work_orders (release_item_id)
    WHERE state IN ('pending_approval', 'approved', 'in_progress', 'failed');
CREATE INDEX work_orders_state_idx ON work_orders (state, id);
CREATE INDEX work_orders_item_idx ON work_orders (release_item_id, id);
CREATE INDEX work_orders_node_idx ON work_orders (node_id, id);
CREATE INDEX work_orders_creator_idx ON work_orders (creator_id, id);

CREATE TABLE approvals (
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    decision TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    comment TEXT NOT NULL DEFAULT '',
    at INTEGER NOT NULL,
    PRIMARY KEY (work_order_id, account_id)
);
CREATE INDEX approvals_account_idx ON approvals (account_id, work_order_id);

CREATE TABLE stage_runs (
    id INTEGER PRIMARY KEY,
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    app_id INTEGER NOT NULL REFERENCES apps (id),
    strategy TEXT NOT NULL,
    canary_json TEXT,
    status TEXT NOT NULL,
    replaced_image TEXT,
    replaced_revision TEXT,
    new_revision TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    message TEXT NOT NULL DEFAULT '',
    CONSTRAINT stage_runs_position_key UNIQUE (work_order_id, position)
);

CREATE TABLE timeline_events (
    id INTEGER PRIMARY KEY,
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    at INTEGER NOT NULL,
    actor_id INTEGER,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    stage_position INTEGER
);
CREATE INDEX timeline_events_work_order_idx ON timeline_events (work_order_id, id);
