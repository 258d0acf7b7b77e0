-- Notifications (issue 17): destinations on a node (inherited by its
-- subtree) told of the timeline events they ask for (events: a comma list;
-- '' = all). A Slack incoming webhook, or a generic webhook signed with the
-- destination's secret the Standard Webhooks way; the URL and the secret
-- are stored sealed. A 410 from it disables it (disabled_reason).
-- A delivery is one event for one destination, written in the transaction
-- of the event itself (the outbox) with the job that sends it; at most one
-- per event and destination. Its message_id is the webhook-id of every
-- attempt.
CREATE TABLE notification_destinations (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('slack', 'webhook')),
    url_sealed TEXT NOT NULL,
    url_hint TEXT NOT NULL,
    secret_sealed TEXT,
    events TEXT NOT NULL DEFAULT '',
    disabled_reason TEXT,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX notification_destinations_node_idx ON notification_destinations (node_id);

CREATE TABLE notification_deliveries (
    id INTEGER PRIMARY KEY,
    destination_id INTEGER NOT NULL REFERENCES notification_destinations (id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL REFERENCES timeline_events (id),
    event TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    attempted_at INTEGER,
    delivered_at INTEGER,
    CONSTRAINT notification_deliveries_once UNIQUE (destination_id, event_id)
);
CREATE INDEX notification_deliveries_destination_idx ON notification_deliveries (destination_id, id);
