-- Clusters, apps and instance settings. Credentials are stored sealed
-- (AES-256-GCM, see backend/src/secret.rs), never in plain text.

CREATE TABLE clusters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('dev', 'test', 'staging', 'prod')),
    in_cluster INTEGER NOT NULL DEFAULT 0,
    kubeconfig_sealed TEXT,
    kube_context TEXT,
    credentials_set_at INTEGER,
    credentials_set_by TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT clusters_name_key UNIQUE (name)
);

CREATE TABLE apps (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    cluster_id INTEGER NOT NULL REFERENCES clusters (id),
    namespace TEXT NOT NULL,
    deployment TEXT NOT NULL,
    container TEXT NOT NULL,
    node_id INTEGER NOT NULL REFERENCES nodes (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT apps_cluster_name_key UNIQUE (cluster_id, name),
    CONSTRAINT apps_workload_key UNIQUE (cluster_id, namespace, deployment, container)
);
CREATE INDEX apps_node_idx ON apps (node_id);
CREATE INDEX apps_name_idx ON apps (name);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL
);
