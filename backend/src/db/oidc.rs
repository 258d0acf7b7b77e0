//! Single sign-on on the database's side: who a provider's person is here,
//! and the roles their groups give them, all written in one transaction
//! per sign-in with its audit rows.
//!
//! A person is found by the provider's `(issuer, subject)`; on their first
//! sign-in by their user name (the configured claim), which links that
//! user to them for good: a later sign-in with another name still finds
//! them, and another subject claiming a linked name is refused. Service
//! accounts are never signed in to, and an administrator is never linked
//! at a first sign-in (a name at the provider must not make someone an
//! admin). A new name creates a user without a
//! password.
//!
//! Roles from groups (`node_members.sso_group`) are set to what the
//! person's groups give now: added, changed, removed. A role given by hand
//! is never touched (a group giving one on the same node leaves it as it
//! is). The admin flag follows the admin group the same way: given and
//! taken back only when the group gave it (`accounts.admin_by_sso`).

use std::collections::BTreeMap;

use sqlx::Row;

use super::accounts::{self, Account, AccountKind, NewAccount};
use super::audit::{self, AuditActor, Change, snapshot};
use super::constraint::Constraint;
use super::error::{Error, Result};
use super::tree::bump_policy_version;
use super::{Db, Tx, now_ms};
use crate::domain::text::shown;
use crate::domain::tree::Role;

/// A person as the provider's verified ID token names them.
#[derive(Debug, Clone)]
pub struct Person {
    pub issuer: String,
    pub subject: String,
    /// Their Rollway user name (the configured claim, lowercased).
    pub name: String,
    pub display_name: String,
    /// The roles their groups give them now: node path → (role, group).
    pub grants: Vec<Grant>,
    /// Whether the admin group holds them; `None` when no admin group is
    /// configured.
    pub admin: Option<bool>,
}

/// A role a group gives on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub group: String,
    pub path: String,
    pub role: Role,
}

/// What a sign-in came to.
pub enum Outcome {
    /// Signed in as this account.
    Account(Account),
    /// Refused, saying why (shown to the person).
    Refused(String),
}

/// Finds, links or creates the person's account and sets the roles of
/// their groups, in one transaction.
pub async fn sign_in(db: &Db, person: &Person, ip: &str) -> Result<Outcome> {
    let mut tx = db.begin_write().await?;
    let outcome = sign_in_in(&mut tx, person, ip).await?;
    if matches!(outcome, Outcome::Account(_)) {
        tx.commit().await?;
    }
    Ok(outcome)
}

async fn sign_in_in(tx: &mut Tx, person: &Person, ip: &str) -> Result<Outcome> {
    let now = now_ms();
    let linked: Option<i64> = sqlx::query_scalar(
        "SELECT account_id FROM oidc_identities WHERE issuer = $1 AND subject = $2",
    )
    .bind(&person.issuer)
    .bind(&person.subject)
    .fetch_optional(&mut **tx)
    .await?;
    let account = match linked {
        Some(id) => {
            sqlx::query(
                "UPDATE oidc_identities SET last_sign_in_at = $1 WHERE issuer = $2 AND subject = $3",
            )
            .bind(now)
            .bind(&person.issuer)
            .bind(&person.subject)
            .execute(&mut **tx)
            .await?;
            account_in(tx, id).await?
        }
        None => match link(tx, person, ip, now).await? {
            Ok(account) => account,
            Err(why) => return Ok(Outcome::Refused(why)),
        },
    };
    if account.is_disabled() {
        return Ok(Outcome::Refused(format!(
            "The account {} is disabled; ask an administrator.",
            account.name
        )));
    }
    let who = AuditActor::of(&account, ip);
    let mut changed = set_group_roles(tx, &account, &person.grants, &who).await?;
    if let Some(admin) = person.admin {
        changed |= set_admin(tx, &account, admin, &who).await?;
    }
    if changed {
        bump_policy_version(tx).await?;
    }
    let account = account_in(tx, account.id).await?;
    Ok(Outcome::Account(account))
}

/// The person's first sign-in: links the user of their name, or creates
/// one; `Err` says why not.
async fn link(
    tx: &mut Tx,
    person: &Person,
    ip: &str,
    now: i64,
) -> Result<std::result::Result<Account, String>> {
    if accounts::validate_name(&person.name).is_err() {
        return Ok(Err(format!(
            "Your user name from the provider, '{}', is not one Rollway can use (lowercase letters, digits, '-', '_' and '.'); ask an administrator to map another claim.",
            shown(&person.name)
        )));
    }
    let existing = sqlx::query(&format!(
        "SELECT {} FROM accounts a WHERE a.name = $1",
        accounts::COLUMNS
    ))
    .bind(&person.name)
    .fetch_optional(&mut **tx)
    .await?;
    let who = AuditActor {
        account_id: None,
        name: person.name.clone(),
        ip: ip.to_string(),
    };
    let account = match existing {
        Some(row) => {
            let account = accounts::from_row(&row).map_err(Error::from)?;
            if account.kind == AccountKind::ServiceAccount {
                return Ok(Err(format!(
                    "'{}' is a service account here; service accounts cannot sign in.",
                    account.name
                )));
            }
            if account.is_admin {
                // Whoever can name themselves so at the provider must not
                // become an administrator here.
                return Ok(Err(format!(
                    "The user {} is an administrator here, and administrators are not linked at a first sign-in: log in with the password, or ask another administrator to take the flag away first.",
                    account.name
                )));
            }
            let other: Option<String> = sqlx::query_scalar(
                "SELECT subject FROM oidc_identities WHERE account_id = $1 AND issuer = $2",
            )
            .bind(account.id)
            .bind(&person.issuer)
            .fetch_optional(&mut **tx)
            .await?;
            if other.is_some() {
                return Ok(Err(format!(
                    "The user {} is already linked to another person at this provider.",
                    account.name
                )));
            }
            account
        }
        None => {
            accounts::insert(
                tx,
                &NewAccount {
                    kind: AccountKind::User,
                    name: &person.name,
                    display_name: &person.display_name,
                    description: "Created at their first single sign-on.",
                    password_hash: None,
                    is_admin: false,
                },
                &who,
            )
            .await?
        }
    };
    sqlx::query(
        "INSERT INTO oidc_identities (issuer, subject, account_id, created_at, last_sign_in_at) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&person.issuer)
    .bind(&person.subject)
    .bind(account.id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| match super::constraint::violated(&e) {
        // Two first sign-ins at once: the other one linked.
        Some(Constraint::OidcSubject | Constraint::OidcAccount) => {
            Error::Conflict("you signed in twice at once; try again".into())
        }
        _ => e.into(),
    })?;
    audit::record(
        tx,
        &AuditActor::of(&account, ip),
        Change {
            action: "account.sso_link",
            target_type: "account",
            target_id: Some(account.id),
            summary: format!(
                "linked {} to their single sign-on at {}",
                account.name, person.issuer
            ),
            before: None,
            after: None,
        },
    )
    .await?;
    Ok(Ok(account))
}

/// The accounts linked to a single sign-on identity.
pub async fn linked(pool: &sqlx::AnyPool) -> Result<std::collections::HashSet<i64>> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT account_id FROM oidc_identities")
        .fetch_all(pool)
        .await?;
    Ok(ids.into_iter().collect())
}

/// The account `id`, read in the sign-in's transaction.
async fn account_in(tx: &mut Tx, id: i64) -> Result<Account> {
    accounts::get_in(tx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("account {id} is gone")))
}

/// A role held on a node: whether by hand, and the group otherwise.
struct Held {
    node_id: i64,
    role: Role,
    group: Option<String>,
}

/// Sets the account's roles from groups to `grants` (the strongest per
/// node); returns whether anything changed.
async fn set_group_roles(
    tx: &mut Tx,
    account: &Account,
    grants: &[Grant],
    who: &AuditActor,
) -> Result<bool> {
    let rows = sqlx::query(
        "SELECT n.path, m.node_id, m.role, m.sso_group FROM node_members m \
         JOIN nodes n ON n.id = m.node_id WHERE m.account_id = $1",
    )
    .bind(account.id)
    .fetch_all(&mut **tx)
    .await?;
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    for row in rows {
        let role: String = row.try_get("role")?;
        held.insert(
            row.try_get("path")?,
            Held {
                node_id: row.try_get("node_id")?,
                role: super::tree::parse_role(&role)?,
                group: row.try_get("sso_group")?,
            },
        );
    }
    let mut wanted: BTreeMap<&str, &Grant> = BTreeMap::new();
    for grant in grants {
        let stronger = wanted
            .get(grant.path.as_str())
            .is_none_or(|g| grant.role > g.role);
        if stronger {
            wanted.insert(&grant.path, grant);
        }
    }
    let mut changed = false;
    for (path, grant) in &wanted {
        let now_held = held.get(*path);
        let change = match now_held {
            // Given by hand: the person's own.
            Some(h) if h.group.is_none() => continue,
            Some(h) if h.role == grant.role && h.group.as_deref() == Some(&grant.group) => {
                continue;
            }
            Some(h) => {
                sqlx::query(
                    "UPDATE node_members SET role = $1, sso_group = $2 WHERE node_id = $3 AND account_id = $4",
                )
                .bind(grant.role.as_str())
                .bind(&grant.group)
                .bind(h.node_id)
                .bind(account.id)
                .execute(&mut **tx)
                .await?;
                ("member.update", h.node_id)
            }
            None => {
                let node_id: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM nodes WHERE path = $1")
                        .bind(*path)
                        .fetch_optional(&mut **tx)
                        .await?;
                let Some(node_id) = node_id else {
                    tracing::warn!(group = %grant.group, path = %path, "a single sign-on group's node does not exist; its role is not given");
                    continue;
                };
                sqlx::query(
                    "INSERT INTO node_members (node_id, account_id, role, created_at, sso_group) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(node_id)
                .bind(account.id)
                .bind(grant.role.as_str())
                .bind(now_ms())
                .bind(&grant.group)
                .execute(&mut **tx)
                .await?;
                ("member.add", node_id)
            }
        };
        changed = true;
        audit::record(
            tx,
            who,
            Change {
                action: change.0,
                target_type: "node",
                target_id: Some(change.1),
                summary: format!(
                    "{} is {} on {} (single sign-on group {})",
                    account.name, grant.role, path, grant.group
                ),
                before: None,
                after: snapshot(&serde_json::json!({
                    "account": account.name, "role": grant.role.as_str(), "sso_group": grant.group,
                })),
            },
        )
        .await?;
    }
    for (path, h) in &held {
        let Some(group) = &h.group else { continue };
        if wanted.contains_key(path.as_str()) {
            continue;
        }
        sqlx::query("DELETE FROM node_members WHERE node_id = $1 AND account_id = $2")
            .bind(h.node_id)
            .bind(account.id)
            .execute(&mut **tx)
            .await?;
        changed = true;
        audit::record(
            tx,
            who,
            Change {
                action: "member.remove",
                target_type: "node",
                target_id: Some(h.node_id),
                summary: format!(
                    "removed {} from {}: no longer in single sign-on group {group}",
                    account.name, path
                ),
                before: snapshot(&serde_json::json!({
                    "account": account.name, "role": h.role.as_str(), "sso_group": group,
                })),
                after: None,
            },
        )
        .await?;
    }
    Ok(changed)
}

/// Gives or takes back the admin flag as the admin group says; returns
/// whether it changed.
async fn set_admin(tx: &mut Tx, account: &Account, admin: bool, who: &AuditActor) -> Result<bool> {
    let by_sso: i64 = sqlx::query_scalar("SELECT admin_by_sso FROM accounts WHERE id = $1")
        .bind(account.id)
        .fetch_one(&mut **tx)
        .await?;
    let (set, summary) = match (account.is_admin, admin) {
        (false, true) => (true, "is an administrator (single sign-on admin group)"),
        (true, false) if by_sso != 0 => (
            false,
            "is no administrator: left the single sign-on admin group",
        ),
        _ => return Ok(false),
    };
    sqlx::query(
        "UPDATE accounts SET is_admin = $1, admin_by_sso = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(i64::from(set))
    .bind(now_ms())
    .bind(account.id)
    .execute(&mut **tx)
    .await?;
    audit::record(
        tx,
        who,
        Change {
            action: "account.admin",
            target_type: "account",
            target_id: Some(account.id),
            summary: format!("{} {summary}", account.name),
            before: snapshot(&serde_json::json!({ "is_admin": account.is_admin })),
            after: snapshot(&serde_json::json!({ "is_admin": set })),
        },
    )
    .await?;
    Ok(true)
}
