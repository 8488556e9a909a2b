//! `portico source add|list|set|rekey`: lead sources with their own settings
//! and credentials (sealed with PORTICO_SECRET_KEY, see `crate::secrets`).

use crate::runtime::host_api::Directory;
use crate::secrets::{self, SecretKeys, SecretsError};
use crate::store::{Store, StoredCredentials};
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The directory adapters read, with the process's keys: stops (one line
/// saying how to fix it) when a key is malformed, or when sources carry
/// secrets that no key of PORTICO_SECRET_KEY opens.
pub async fn directory(store: &Store) -> anyhow::Result<Directory> {
    let keys = SecretKeys::from_env()?;
    let sealed = store
        .sources(None)
        .await
        .context("cannot read the lead sources")?;
    for row in sealed.iter().filter(|r| r.secrets_sealed.is_some()) {
        secrets::secrets_of(keys.as_ref(), row).map_err(|e| match e {
            SecretsError::MissingKey => anyhow::anyhow!(
                "PORTICO_SECRET_KEY is not set, and source {} ({} {}) carries secrets; set the key they were sealed with ({})",
                row.id,
                row.kind,
                row.external_key,
                secrets::MAKE_ONE
            ),
            e => anyhow::anyhow!("source {} ({} {}): {e}", row.id, row.kind, row.external_key),
        })?;
    }
    Ok(Directory {
        store: store.clone(),
        keys: keys.map(Arc::new),
    })
}

/// Settings and secrets from `--setting` and `--secret` arguments.
fn read_args(
    secret_args: &[String],
    setting_args: &[String],
) -> anyhow::Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
    let secrets = secret_args
        .iter()
        .map(|a| secrets::read_secret_arg(a))
        .collect::<anyhow::Result<_>>()?;
    let settings = setting_args
        .iter()
        .map(|a| secrets::read_setting_arg(a))
        .collect::<anyhow::Result<_>>()?;
    Ok((settings, secrets))
}

/// `portico source add`: prints the new source's id.
pub async fn add(
    store: &Store,
    tenant: i64,
    kind: &str,
    key: &str,
    secret_args: &[String],
    setting_args: &[String],
) -> anyhow::Result<()> {
    let (kind, key) = (kind.trim(), key.trim());
    anyhow::ensure!(
        !kind.is_empty() && !key.is_empty(),
        "--kind and --key must not be empty"
    );
    let (settings, secrets) = read_args(secret_args, setting_args)?;
    let keys = SecretKeys::from_env()?;
    let credentials = if settings.is_empty() && secrets.is_empty() {
        None
    } else {
        Some(secrets::stored(
            keys.as_ref(),
            kind,
            key,
            &settings,
            &secrets,
        )?)
    };
    let id = store
        .add_lead_source_with(tenant, kind, key, credentials)
        .await?;
    println!("{id}");
    Ok(())
}

/// `portico source list`: one JSON object a line, secret names only.
pub async fn list(store: &Store, tenant: Option<i64>) -> anyhow::Result<()> {
    for row in store.sources(tenant).await? {
        println!("{}", secrets::source_view(&row));
    }
    Ok(())
}

/// What `portico source set` and `PATCH /api/admin/lead-sources/{id}` change:
/// values to set, and names to remove.
#[derive(Debug, Default)]
pub struct Changes {
    pub secrets: BTreeMap<String, Option<String>>,
    pub settings: BTreeMap<String, Option<String>>,
}

/// Why a source could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no source {0}; see `portico source list`")]
    NoSource(String),
    #[error("source {0} kept changing while this change was made; try again")]
    Busy(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Apply `changes` to the source `kind` + `key` (its secrets opened, changed
/// and sealed again, under the current key); items read them from then on
/// (a server caches sources for up to a second; its own changes at once). A
/// compare-and-swap: a change made meanwhile by someone else is read again
/// and kept, never overwritten.
pub async fn change(
    store: &Store,
    keys: Option<&SecretKeys>,
    kind: &str,
    key: &str,
    changes: &Changes,
) -> Result<crate::store::SourceRow, ChangeError> {
    for _ in 0..5 {
        let row = store
            .source(kind, key)
            .await?
            .ok_or_else(|| ChangeError::NoSource(format!("{kind} {key}")))?;
        let mut secrets = secrets::secrets_of(keys, &row)?;
        let mut settings = secrets::settings_of(&row);
        for (name, value) in &changes.secrets {
            match value {
                Some(v) => secrets.insert(name.clone(), v.clone()),
                None => secrets.remove(name),
            };
        }
        for (name, value) in &changes.settings {
            match value {
                Some(v) => settings.insert(name.clone(), v.clone()),
                None => settings.remove(name),
            };
        }
        let stored = secrets::stored(keys, kind, key, &settings, &secrets)?;
        if store
            .set_source_credentials(row.id, stored, Some(StoredCredentials::of(&row)))
            .await?
        {
            return store
                .source(kind, key)
                .await?
                .ok_or_else(|| ChangeError::NoSource(format!("{kind} {key}")));
        }
    }
    Err(ChangeError::Busy(format!("{kind} {key}")))
}

/// `portico source set`: change a source's secrets and settings.
pub async fn set(
    store: &Store,
    kind: &str,
    key: &str,
    secret_args: &[String],
    setting_args: &[String],
    remove: &[String],
) -> anyhow::Result<()> {
    let (settings, secrets) = read_args(secret_args, setting_args)?;
    let mut changes = Changes::default();
    for name in remove {
        changes.secrets.insert(name.clone(), None);
        changes.settings.insert(name.clone(), None);
    }
    changes
        .secrets
        .extend(secrets.into_iter().map(|(k, v)| (k, Some(v))));
    changes
        .settings
        .extend(settings.into_iter().map(|(k, v)| (k, Some(v))));
    let keys = SecretKeys::from_env()?;
    let row = change(store, keys.as_ref(), kind.trim(), key.trim(), &changes).await?;
    println!("{}", secrets::source_view(&row));
    Ok(())
}

/// `portico source rekey`: seal every source's secrets again under the first
/// key of PORTICO_SECRET_KEY (the others only open); prints what it did.
pub async fn rekey(store: &Store) -> anyhow::Result<()> {
    let keys = SecretKeys::from_env()?.ok_or(SecretsError::MissingKey)?;
    let rows = store.sources(None).await?;
    let (mut resealed, mut current) = (0, 0);
    for row in rows.iter().filter(|r| r.secrets_sealed.is_some()) {
        if row
            .secrets_sealed
            .as_deref()
            .is_some_and(|s| keys.is_current(s))
        {
            current += 1;
            continue;
        }
        let opened = secrets::secrets_of(Some(&keys), row)
            .with_context(|| format!("source {} ({} {})", row.id, row.kind, row.external_key))?;
        let stored = secrets::stored(
            Some(&keys),
            &row.kind,
            &row.external_key,
            &secrets::settings_of(row),
            &opened,
        )?;
        // Changed meanwhile: whoever changed it sealed it under the current key.
        if store
            .set_source_credentials(row.id, stored, Some(StoredCredentials::of(row)))
            .await?
        {
            resealed += 1;
        } else {
            current += 1;
        }
    }
    println!(
        "{resealed} sources sealed again under the first key of PORTICO_SECRET_KEY; {current} already were. The other keys can go now."
    );
    Ok(())
}
