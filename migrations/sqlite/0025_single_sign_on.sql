-- Single sign-on (issue 17): the person a provider's (issuer, subject)
-- is here, linked on their first sign-in and matched by it ever after;
-- one link per account and provider. A membership given by a provider's
-- group names the group (sso_group; NULL when given by hand, and a change
-- by hand makes it NULL), so sign-ins add and remove only those. An admin
-- flag set by the admin group is marked (admin_by_sso) so that it alone is
-- taken back when the person leaves the group.
CREATE TABLE oidc_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    last_sign_in_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE UNIQUE INDEX oidc_identities_account_idx ON oidc_identities (account_id, issuer);

ALTER TABLE node_members ADD COLUMN sso_group TEXT;
ALTER TABLE accounts ADD COLUMN admin_by_sso INTEGER NOT NULL DEFAULT 0;
