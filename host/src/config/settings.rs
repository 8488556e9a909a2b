//! Process settings: flags, then env, then defaults (README, "Commands").
//!
//! A bad value stops start-up with one line naming the setting and the fix.

use super::plugins::parse_bool;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "--listen/PORTICO_LISTEN = {0:?} is not an address; use host:port, e.g. 127.0.0.1:8080"
    )]
    Listen(String),
    #[error(
        "--database-url/DATABASE_URL = {0} is not supported; use sqlite://portico.db (created if missing) or postgres://user:pass@host/db"
    )]
    DatabaseUrl(DatabaseUrl),
    #[error("{name} = {value:?} is not a boolean; use true or false")]
    Bool { name: &'static str, value: String },
}

/// Which database backend a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// A database URL. Shown (Display, Debug) with its password replaced by `***`:
/// it goes into logs and error messages, the password never does.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: &str) -> DatabaseUrl {
        DatabaseUrl(url.trim().to_string())
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                // libpq also takes the password as a query parameter.
                if u.query_pairs().any(|(k, _)| k == "password") {
                    let pairs: Vec<(String, String)> = u
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if k == "password" {
                                "***".into()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    u.query_pairs_mut().clear().extend_pairs(pairs);
                }
                f.write_str(u.as_str())
            }
            // Not a URL we can take apart: show only its scheme.
            Err(_) => write!(f, "{}:…", self.0.split(':').next().unwrap_or_default()),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Settings shared by every command.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub plugins_path: PathBuf,
    pub database_url: DatabaseUrl,
    /// Bearer token for admin and send endpoints; `None` → those endpoints refuse everyone.
    pub admin_token: Option<String>,
}

impl Settings {
    pub fn new(
        listen: &str,
        plugins_path: PathBuf,
        database_url: &str,
        admin_token: Option<String>,
    ) -> Result<Self, SettingsError> {
        let listen = listen
            .trim()
            .parse()
            .map_err(|_| SettingsError::Listen(listen.to_string()))?;
        let database_url = DatabaseUrl::new(database_url);
        database_kind(&database_url)?;
        Ok(Settings {
            listen,
            plugins_path,
            database_url,
            admin_token: admin_token.filter(|t| !t.trim().is_empty()),
        })
    }
}

/// Which backend a database URL names, or why it names none.
pub fn database_kind(url: &DatabaseUrl) -> Result<DatabaseKind, SettingsError> {
    let text = url.expose();
    if text.starts_with("sqlite:") {
        Ok(DatabaseKind::Sqlite)
    } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Ok(DatabaseKind::Postgres)
    } else {
        Err(SettingsError::DatabaseUrl(url.clone()))
    }
}

/// The integration switches (README: WhatsApp, Google Ads) as health reports them.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct IntegrationToggles {
    /// Meta Lead Ads is on whenever its plugin is enabled in plugins.toml.
    pub meta: bool,
    /// `GOOGLE_ADS_OFFLINE_ENABLED`: upload queued conversions.
    #[serde(rename = "googleAds")]
    pub google_ads: bool,
    /// `WHATSAPP_WEBHOOK_ENABLED`: serve the WhatsApp routes.
    pub whatsapp: bool,
}

/// Read a boolean env variable; unset or empty → `default`.
pub fn env_bool(name: &'static str, default: bool) -> Result<bool, SettingsError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            parse_bool(&v).ok_or(SettingsError::Bool { name, value: v })
        }
        _ => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_themselves() {
        let e = Settings::new("nope", "p.toml".into(), "sqlite://x.db", None).unwrap_err();
        assert!(e.to_string().contains("PORTICO_LISTEN"));
        let e = Settings::new("127.0.0.1:0", "p.toml".into(), "mysql://x", None).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"));
        let s = Settings::new(
            "127.0.0.1:0",
            "p.toml".into(),
            "sqlite://x.db",
            Some(" ".into()),
        )
        .unwrap();
        assert_eq!(s.admin_token, None);
    }

    #[test]
    fn the_database_password_never_shows() {
        let s = Settings::new(
            "127.0.0.1:0",
            "p.toml".into(),
            "postgres://app:s3cret@db:5432/portico?sslmode=require",
            None,
        )
        .unwrap();
        let shown = format!("{} {:?} {s:?}", s.database_url, s.database_url);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/portico?sslmode=require"));
        assert!(s.database_url.expose().contains("s3cret"));
        let in_query = DatabaseUrl::new("postgres://app@db/p?sslmode=require&password=s3cret");
        assert_eq!(
            in_query.to_string(),
            "postgres://app@db/p?sslmode=require&password=***"
        );
        let e = Settings::new("127.0.0.1:0", "p.toml".into(), "mysql://u:s3cret@h/d", None)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
