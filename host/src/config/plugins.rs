//! `plugins.toml`: which adapters load, where they mount, their config, secrets and limits.
//!
//! The file is parsed with unknown keys denied, then resolved into [`PluginSpec`]s:
//! paths made absolute and checked, env references read, limits defaulted and
//! range-checked, mounts checked for clashes. Every error names the plugin and the key.
//!
//! ```toml
//! [plugins.meta]
//! path = "target/wasm32-wasip2/plugin/portico_meta.wasm"
//! build = "cargo build --profile plugin --target wasm32-wasip2 -p portico-meta"
//! mount = "meta"                                   # default: the plugin's name
//! enabled = true                                   # or { env = "X_ENABLED", default = false }
//! aliases = { "/api/webhooks/meta/leads" = "webhook" }
//! config = { verify_signature = { env = "META_VERIFY_SIGNATURE", default = "true" } }
//! secrets = { app_secret = { env = "META_APP_SECRET" } }
//! limits = { max_body_bytes = 4194304, call_timeout_ms = 5000, memory_mb = 64 }
//! ```

use super::limits::{Limits, LimitsSpec};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can be wrong with plugins.toml, each naming where.
#[derive(Debug, thiserror::Error)]
pub enum PluginsError {
    #[error(
        "cannot read plugin manifest {path}: {source} (set --plugins or PORTICO_PLUGINS to the right file)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: plugin {plugin:?}: {message}")]
    Invalid {
        path: PathBuf,
        plugin: String,
        message: String,
    },
}

/// A config or secret value: a literal, or read from the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ValueSpec {
    Text(String),
    Bool(bool),
    Integer(i64),
    Env(EnvRef),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRef {
    pub env: String,
    #[serde(default)]
    pub default: Option<DefaultValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DefaultValue {
    Text(String),
    Bool(bool),
    Integer(i64),
}

impl DefaultValue {
    fn render(&self) -> String {
        match self {
            DefaultValue::Text(s) => s.clone(),
            DefaultValue::Bool(b) => b.to_string(),
            DefaultValue::Integer(i) => i.to_string(),
        }
    }
}

impl ValueSpec {
    /// The value now, reading env through `env`; `None` when the variable is unset and has no default.
    fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            ValueSpec::Text(s) => Some(s.clone()),
            ValueSpec::Bool(b) => Some(b.to_string()),
            ValueSpec::Integer(i) => Some(i.to_string()),
            ValueSpec::Env(r) => env(&r.env)
                .filter(|v| !v.is_empty())
                .or_else(|| r.default.as_ref().map(DefaultValue::render)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    defaults: DefaultsSpec,
    #[serde(default)]
    plugins: BTreeMap<String, EntrySpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsSpec {
    #[serde(default)]
    limits: LimitsSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    path: PathBuf,
    #[serde(default)]
    build: Option<String>,
    #[serde(default)]
    mount: Option<String>,
    #[serde(default)]
    enabled: Option<ValueSpec>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    allowed_hosts: Vec<ValueSpec>,
    #[serde(default)]
    allow_private_networks: Option<ValueSpec>,
    #[serde(default)]
    source_kinds: Option<Vec<String>>,
    /// Source folders `portico dev` watches to rebuild this plugin.
    #[serde(default)]
    watch: Vec<PathBuf>,
    #[serde(default)]
    config: BTreeMap<String, ValueSpec>,
    #[serde(default)]
    secrets: BTreeMap<String, ValueSpec>,
    #[serde(default)]
    limits: LimitsSpec,
}

/// A secret value: never printed by Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One plugin, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    /// Absolute path of the component.
    pub wasm_path: PathBuf,
    /// Shell command that builds the component, run from the manifest's folder.
    pub build: Option<String>,
    /// Mounted at /api/integrations/{mount}/...
    pub mount: String,
    pub enabled: bool,
    /// Extra absolute paths (legacy routes) mapped to one of the plugin's routes.
    pub aliases: BTreeMap<String, String>,
    /// Where the plugin's outbound HTTP may go; empty means nowhere.
    pub allowed_hosts: Vec<HostRule>,
    /// Whether a name in `allowed_hosts` may resolve to a private, loopback or
    /// link-local address (an address named outright is always allowed).
    pub allow_private_networks: bool,
    /// Kinds of lead sources whose secrets and settings the plugin may read
    /// through the directory (by default its mount: `meta`, `whatsapp`, `google`).
    pub source_kinds: Vec<String>,
    /// Absolute source folders that `portico dev` watches for this plugin.
    pub watch: Vec<PathBuf>,
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    pub limits: Limits,
}

/// One entry of `allowed_hosts`: a scheme, a host and a port. An entry
/// without a scheme means https; one without a port means the scheme's own
/// (443 or 80), so `https://graph.facebook.com` never lets a plugin reach
/// `http://graph.facebook.com` or another port of that host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl HostRule {
    /// Read `https://graph.facebook.com`, `graph.facebook.com` or `http://127.0.0.1:8080`.
    pub fn parse(raw: &str) -> Result<HostRule, String> {
        let raw = raw.trim();
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("https://{raw}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|e| format!("{raw:?} is not a host or URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{raw:?}: only http and https are allowed, not {}",
                url.scheme()
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty() && !h.contains('*'))
            .ok_or_else(|| format!("{raw:?} names no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{raw:?} names no port"))?;
        Ok(HostRule {
            scheme: url.scheme().to_string(),
            host: host
                .trim_matches(|c| c == '[' || c == ']')
                .to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
            && self
                .host
                .eq_ignore_ascii_case(host.trim_matches(|c| c == '[' || c == ']'))
            && self.port == port
    }

    /// Whether the rule names an address rather than a name: allowing it is
    /// allowing that address, private or not.
    pub fn is_address(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// The whole manifest, resolved.
#[derive(Debug, Clone)]
pub struct PluginsFile {
    pub path: PathBuf,
    /// The folder relative paths and build commands start from.
    pub base_dir: PathBuf,
    pub plugins: Vec<PluginSpec>,
}

impl PluginsFile {
    /// Where compiled components are cached: `PORTICO_CACHE_DIR`, `off` for
    /// nowhere, by default `.portico/cache` beside plugins.toml.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        Self::cache_dir_for(&self.base_dir)
    }

    /// The component cache of a plugins.toml in `base_dir`: PORTICO_CACHE_DIR
    /// (`off`: none), else `.portico/cache` there.
    pub fn cache_dir_for(base_dir: &Path) -> Option<PathBuf> {
        match std::env::var("PORTICO_CACHE_DIR") {
            Ok(v) if v.trim().eq_ignore_ascii_case("off") => None,
            Ok(v) if !v.trim().is_empty() => Some(PathBuf::from(v.trim())),
            _ => Some(base_dir.join(".portico").join("cache")),
        }
    }
}

/// Whether to insist that component files exist (serve) or not (build, which makes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    Require,
    Skip,
}

/// Read and resolve plugins.toml with the process environment.
pub fn load_plugins_file(path: &Path, files: FileCheck) -> Result<PluginsFile, PluginsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PluginsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    resolve(path, &text, files, &|k| std::env::var(k).ok())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Resolve manifest text; `env` reads variables (injected for tests).
pub fn resolve(
    path: &Path,
    text: &str,
    files: FileCheck,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PluginsFile, PluginsError> {
    let spec: FileSpec = toml::from_str(text).map_err(|e| PluginsError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " | "),
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base_dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let invalid = |plugin: &str, message: String| PluginsError::Invalid {
        path: path.to_path_buf(),
        plugin: plugin.to_string(),
        message,
    };

    let base_limits =
        spec.defaults
            .limits
            .resolve(Limits::default())
            .map_err(|(key, v, lo, hi)| PluginsError::Syntax {
                path: path.to_path_buf(),
                message: format!("defaults.limits.{key} = {v} is outside {lo}..={hi}"),
            })?;

    let mut plugins = Vec::new();
    let mut mounts: HashMap<String, String> = HashMap::new();
    let mut alias_owner: HashMap<String, String> = HashMap::new();
    for (name, entry) in spec.plugins {
        if !valid_name(&name) {
            return Err(invalid(
                &name,
                "plugin names use a-z, 0-9, '-' and '_' (at most 64)".into(),
            ));
        }
        let mount = entry.mount.clone().unwrap_or_else(|| name.clone());
        if !valid_name(&mount) {
            return Err(invalid(
                &name,
                format!(
                    "mount = {mount:?}: use a-z, 0-9, '-' and '_' (it becomes /api/integrations/{{mount}})"
                ),
            ));
        }
        if let Some(other) = mounts.insert(mount.clone(), name.clone()) {
            return Err(invalid(
                &name,
                format!(
                    "mount = {mount:?} is already used by plugin {other:?}; give one of them another mount"
                ),
            ));
        }
        let enabled = match &entry.enabled {
            None => true,
            Some(v) => {
                let raw = v.resolve(env).unwrap_or_else(|| "true".into());
                parse_bool(&raw).ok_or_else(|| {
                    let from = match v {
                        ValueSpec::Env(r) => format!(" (from env {})", r.env),
                        _ => String::new(),
                    };
                    invalid(
                        &name,
                        format!("enabled = {raw:?}{from} is not true or false"),
                    )
                })?
            }
        };
        let limits = entry
            .limits
            .resolve(base_limits)
            .map_err(|(key, v, lo, hi)| {
                invalid(&name, format!("limits.{key} = {v} is outside {lo}..={hi}"))
            })?;
        for (alias, route) in &entry.aliases {
            if !alias.starts_with('/')
                || alias.starts_with("/api/integrations/")
                || alias.starts_with("/api/health")
            {
                return Err(invalid(
                    &name,
                    format!(
                        "aliases: {alias:?} must be an absolute path outside /api/integrations and /api/health"
                    ),
                ));
            }
            if route.is_empty() {
                return Err(invalid(
                    &name,
                    format!("aliases.{alias:?}: the route it maps to is empty"),
                ));
            }
            if let Some(other) = alias_owner.insert(alias.clone(), name.clone()) {
                return Err(invalid(
                    &name,
                    format!("aliases: {alias:?} is already an alias of plugin {other:?}"),
                ));
            }
        }
        let wasm_path = if entry.path.is_absolute() {
            entry.path.clone()
        } else {
            base_dir.join(&entry.path)
        };
        if files == FileCheck::Require && enabled && !wasm_path.is_file() {
            let hint = if entry.build.is_some() {
                "run `portico build` (or `portico up`) first"
            } else {
                "build the component or fix the path"
            };
            return Err(invalid(
                &name,
                format!(
                    "path = {:?}: no such file ({}); {hint}",
                    entry.path,
                    wasm_path.display()
                ),
            ));
        }
        let mut allowed_hosts = Vec::new();
        for (i, value) in entry.allowed_hosts.iter().enumerate() {
            if let Some(raw) = value.resolve(env) {
                let rule = HostRule::parse(&raw)
                    .map_err(|e| invalid(&name, format!("allowed_hosts[{i}]: {e}")))?;
                allowed_hosts.push(rule);
            }
        }
        let source_kinds = entry
            .source_kinds
            .clone()
            .unwrap_or_else(|| vec![mount.clone()]);
        let allow_private_networks = match &entry.allow_private_networks {
            None => false,
            Some(v) => {
                let raw = v.resolve(env).unwrap_or_else(|| "false".into());
                parse_bool(&raw).ok_or_else(|| {
                    invalid(
                        &name,
                        format!("allow_private_networks = {raw:?} is not true or false"),
                    )
                })?
            }
        };
        let config = entry
            .config
            .iter()
            .filter_map(|(k, v)| v.resolve(env).map(|v| (k.clone(), v)))
            .collect();
        let secrets = entry
            .secrets
            .iter()
            .filter_map(|(k, v)| v.resolve(env).map(|v| (k.clone(), Secret(v))))
            .collect();
        plugins.push(PluginSpec {
            name,
            wasm_path,
            build: entry.build,
            mount,
            enabled,
            aliases: entry.aliases,
            allowed_hosts,
            allow_private_networks,
            source_kinds,
            watch: entry
                .watch
                .iter()
                .map(|p| {
                    if p.is_absolute() {
                        p.clone()
                    } else {
                        base_dir.join(p)
                    }
                })
                .collect(),
            config,
            secrets,
            limits,
        });
    }
    Ok(PluginsFile {
        path: path.to_path_buf(),
        base_dir,
        plugins,
    })
}

/// Booleans as operators write them in env files.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn parse(text: &str) -> Result<PluginsFile, PluginsError> {
        resolve(
            Path::new("/etc/portico/plugins.toml"),
            text,
            FileCheck::Skip,
            &env(&[("META_APP_SECRET", "s1,s2"), ("OFF", "false")]),
        )
    }

    #[test]
    fn resolves_env_defaults_and_paths() {
        let f = parse(
            r#"
            [plugins.meta]
            path = "meta.wasm"
            aliases = { "/api/webhooks/meta/leads" = "webhook" }
            config = { verify_signature = { env = "META_VERIFY_SIGNATURE", default = true } }
            secrets = { app_secret = { env = "META_APP_SECRET" }, verify_token = { env = "UNSET" } }
            limits = { memory_mb = 32 }
            allowed_hosts = [{ env = "GRAPH", default = "https://graph.facebook.com" }, "http://127.0.0.1:9000", "api.example.com:8443"]
            [plugins.whatsapp]
            path = "/abs/wa.wasm"
            enabled = { env = "OFF", default = true }
            "#,
        )
        .unwrap();
        let meta = &f.plugins[0];
        assert_eq!(meta.mount, "meta");
        assert_eq!(meta.wasm_path, PathBuf::from("/etc/portico/meta.wasm"));
        assert_eq!(meta.config["verify_signature"], "true");
        assert_eq!(meta.secrets["app_secret"].expose(), "s1,s2");
        assert!(!meta.secrets.contains_key("verify_token"));
        assert_eq!(meta.limits.memory_bytes, 32 << 20);
        assert!(format!("{meta:?}").contains("Secret(***)"));
        assert!(!format!("{meta:?}").contains("s1,s2"));
        assert!(!f.plugins[1].enabled);
        assert_eq!(
            meta.allowed_hosts[0],
            HostRule {
                scheme: "https".into(),
                host: "graph.facebook.com".into(),
                port: 443
            }
        );
        let [graph, local, bare] = &meta.allowed_hosts[..] else {
            panic!("three rules")
        };
        assert!(graph.allows("https", "graph.facebook.com", 443));
        // Scheme and port are part of the rule.
        assert!(!graph.allows("http", "graph.facebook.com", 80));
        assert!(!graph.allows("https", "graph.facebook.com", 8443));
        assert!(local.allows("http", "127.0.0.1", 9000));
        assert!(!local.allows("http", "127.0.0.1", 9001));
        assert!(!local.allows("https", "127.0.0.1", 9000));
        assert!(local.is_address() && !graph.is_address());
        // No scheme: https only.
        assert!(bare.allows("https", "api.example.com", 8443));
        assert!(!bare.allows("http", "api.example.com", 8443));
        assert_eq!(graph.to_string(), "https://graph.facebook.com:443");
        assert!(!meta.allow_private_networks);
        assert!(HostRule::parse("ftp://example.com").is_err());
    }

    #[test]
    fn errors_name_the_plugin_and_key() {
        let e = parse("[plugins.meta]\npath = \"m.wasm\"\nmemory = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `memory`"), "{e}");

        let e = parse("[plugins.a]\npath = \"a.wasm\"\nmount = \"x\"\n[plugins.b]\npath = \"b.wasm\"\nmount = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plugin \"b\"") && e.contains("already used by plugin \"a\""),
            "{e}"
        );

        let e = parse("[plugins.a]\npath = \"a.wasm\"\nlimits = { call_timeout_ms = 0 }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plugin \"a\"") && e.contains("limits.call_timeout_ms = 0"),
            "{e}"
        );

        let e = parse("[plugins.a]\npath = \"a.wasm\"\nenabled = \"maybe\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("enabled = \"maybe\""), "{e}");
    }

    #[test]
    fn missing_files_are_errors_when_required() {
        let e = resolve(
            Path::new("/nonexistent/plugins.toml"),
            "[plugins.meta]\npath = \"meta.wasm\"\nbuild = \"make\"\n",
            FileCheck::Require,
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("plugin \"meta\"")
                && e.contains("no such file")
                && e.contains("portico build"),
            "{e}"
        );
    }
}
