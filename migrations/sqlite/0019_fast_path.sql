-- The CI fast path (issue 16): deployments straight to an app on a dev or
-- test cluster, without a work order. A deployment targets the app's
-- Deployment or, with a lane, the lane's clone of it; its job (subject
-- 'deployment') writes the image and follows the rollout. Each change of
-- its status is one row of deployment_events, written in the same
-- transaction. A lane is a per-branch copy of an app's Deployment (and
-- Service), removed by a person, CI, or the engine once idle for the
-- lane TTL (its 'lane' job, queued to run when the TTL would pass).
-- Idempotency keys keep a POST's answer per account for 24 hours.

CREATE TABLE deployments (
    id INTEGER PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- The lane's slug; NULL: the app's own Deployment.
    lane TEXT,
    -- The Deployment written (the app's, or the lane's clone).
    target TEXT NOT NULL,
    image TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'rolling_out', 'succeeded', 'failed')),
    message TEXT NOT NULL DEFAULT '',
    -- What the deploy replaced, recorded before its first write.
    replaced_image TEXT,
    deployment_uid TEXT,
    new_revision TEXT,
    deadline_at INTEGER,
    created_by_id INTEGER REFERENCES accounts (id),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX deployments_app_idx ON deployments (app_id, id);

CREATE TABLE deployment_events (
    id INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX deployment_events_deployment_idx ON deployment_events (deployment_id, id);

CREATE TABLE lanes (
    id INTEGER PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps (id),
    slug TEXT NOT NULL,
    -- The clone's Deployment and Service (NULL: the app has no Service).
    deployment TEXT NOT NULL,
    service TEXT,
    image TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'removing')),
    created_at INTEGER NOT NULL,
    -- The last deployment to the lane: idle since then.
    deployed_at INTEGER NOT NULL,
    CONSTRAINT lanes_app_slug_key UNIQUE (app_id, slug)
);

CREATE TABLE idempotency_keys (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    key TEXT NOT NULL,
    -- The method and path the key was first used with, and a hash of the body.
    scope TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    -- NULL while the first request is still in flight.
    status INTEGER,
    response TEXT,
    created_at INTEGER NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
