-- GitLab CI ID tokens: an admin binds claims of GitLab's `id_tokens:` JWT
-- to a service account, and a request whose verified token matches a
-- binding acts as that account (domain::id_token says how they match).
-- `project_path` is stored lowercased: a full project path or `group/*`.
-- `ref_type` and `ref_pattern` are NULL when any will do; `protected_only`
-- asks for the `ref_protected` claim to be "true".
CREATE TABLE id_token_bindings (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    project_path TEXT NOT NULL,
    ref_type TEXT CHECK (ref_type IN ('branch', 'tag')),
    ref_pattern TEXT,
    protected_only INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    created_by INTEGER REFERENCES accounts (id) ON DELETE SET NULL
);
CREATE INDEX id_token_bindings_project_idx ON id_token_bindings (project_path);
CREATE INDEX id_token_bindings_account_idx ON id_token_bindings (account_id, id);
