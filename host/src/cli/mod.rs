//! The `portico` command line (README, "Commands").

mod build;
mod dev;
mod dlq;
mod plugin;
mod scaffold;
mod serve;
pub(crate) mod source;
mod toolchain;

use crate::config::Settings;
use crate::config::plugins::{FileCheck, load_plugins_file};
use crate::store::Store;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Integration host: provider webhooks in, through sandboxed Wasm adapters"
)]
pub struct Cli {
    /// Address to serve on.
    #[arg(
        long,
        global = true,
        env = "PORTICO_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: String,
    /// The plugin manifest.
    #[arg(
        long,
        global = true,
        env = "PORTICO_PLUGINS",
        default_value = "./plugins.toml"
    )]
    plugins: PathBuf,
    /// sqlite://FILE (created if missing) or postgres://USER:PASSWORD@HOST:PORT/DB[?sslmode=require&max_connections=10&statement_timeout=30s]
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://portico.db"
    )]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with prebuilt plugins; migrations run on start.
    Serve,
    /// Build every plugin of plugins.toml that declares a `build` command.
    Build,
    /// Build, then serve.
    Up,
    /// Up, then rebuild and hot-reload a plugin whenever its sources change.
    Dev,
    /// Apply migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Map providers' ids to tenants.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Inspect and replay the dead-letter queue (failed and dead events).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Tools for adapter authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Scaffold plugins/NAME from the template of its language.
    New {
        name: String,
        /// The adapter's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
    },
    /// Load a component, check it implements the world, print its manifest.
    Check { file: PathBuf },
    /// Run verify, parse and map-to-domain offline and print the result as JSON.
    Call {
        /// The plugin's name in plugins.toml (its config and secrets apply).
        name: String,
        /// The raw request body.
        #[arg(long)]
        body: PathBuf,
        /// A request header, 'Name: value'; repeat for more.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// The plugin route the request is for.
        #[arg(long, default_value = "webhook")]
        route: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List events (default: failed and dead ones).
    List {
        /// received, processed, failed, dead or ignored; repeat or comma-separate.
        #[arg(long, value_delimiter = ',')]
        status: Vec<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Run events through their plugin again (dedup makes repeats harmless).
    Replay {
        /// One event id.
        #[arg(conflicts_with = "all_failed")]
        id: Option<i64>,
        /// Every failed event (add --include-dead for dead ones).
        #[arg(long)]
        all_failed: bool,
        #[arg(long, requires = "all_failed")]
        include_dead: bool,
        #[arg(long)]
        source: Option<String>,
        /// Only events created at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events created at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// List what would be replayed, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its id.
    Add { name: String },
}

#[derive(Debug, Subcommand)]
enum SourceCommand {
    /// Map a provider's id (page id, phone number id, customer id, ...) to a tenant,
    /// with the source's own credentials and settings.
    Add {
        #[arg(long)]
        tenant: i64,
        /// meta, whatsapp, google, or another adapter's kind.
        #[arg(long)]
        kind: String,
        /// The provider's id.
        #[arg(long)]
        key: String,
        /// A credential of this source, sealed with PORTICO_SECRET_KEY:
        /// NAME=VALUE, NAME=@FILE or NAME=env:VAR (e.g. page_access_token=@token.txt).
        #[arg(long = "secret", value_name = "NAME=VALUE|NAME=@FILE|NAME=env:VAR")]
        secrets: Vec<String>,
        /// A setting of this source, e.g. conversion_action=123.
        #[arg(long = "setting", value_name = "NAME=VALUE")]
        settings: Vec<String>,
    },
    /// The sources, one JSON object a line, with the names (never the values) of their secrets.
    List {
        #[arg(long)]
        tenant: Option<i64>,
    },
    /// Change a source's secrets and settings; a running server uses them within a second.
    Set {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        key: String,
        #[arg(long = "secret", value_name = "NAME=VALUE|NAME=@FILE|NAME=env:VAR")]
        secrets: Vec<String>,
        #[arg(long = "setting", value_name = "NAME=VALUE")]
        settings: Vec<String>,
        /// Remove the secret or setting of this name.
        #[arg(long = "remove", value_name = "NAME")]
        remove: Vec<String>,
    },
    /// Seal every source's secrets again under the first key of PORTICO_SECRET_KEY
    /// (list the new key first, the old one after it; drop the old one afterwards).
    Rekey,
}

impl Cli {
    fn settings(&self) -> anyhow::Result<Settings> {
        let token = std::env::var("PORTICO_ADMIN_TOKEN").ok();
        Ok(Settings::new(
            &self.listen,
            self.plugins.clone(),
            &self.database_url,
            token,
        )?)
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Store::open(settings.database_url.expose())
        .await
        .with_context(|| {
            format!(
                "cannot open the database {} (--database-url/DATABASE_URL)",
                settings.database_url
            )
        })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings()?;
    match &cli.command {
        Command::Serve => serve::serve(&settings, crate::runtime::engine::Recompile::Whole).await,
        Command::Build => {
            let file = load_plugins_file(&settings.plugins_path, FileCheck::Skip)?;
            build::build_all(&file).await
        }
        Command::Up => {
            let file = load_plugins_file(&settings.plugins_path, FileCheck::Skip)?;
            build::build_all(&file).await?;
            serve::serve(&settings, crate::runtime::engine::Recompile::Whole).await
        }
        Command::Dev => dev::dev(&settings).await,
        Command::Plugin(PluginCommand::New { name, lang }) => {
            scaffold::new_plugin(&settings.plugins_path, name, *lang)
        }
        Command::Plugin(PluginCommand::Check { file }) => {
            plugin::check(&settings.plugins_path, file).await
        }
        Command::Plugin(PluginCommand::Call {
            name,
            body,
            headers,
            route,
        }) => plugin::call(&settings.plugins_path, name, body, headers, route).await,
        Command::Migrate => {
            open_store(&settings).await?;
            eprintln!("migrations applied to {}", settings.database_url);
            Ok(())
        }
        Command::Tenant(TenantCommand::Add { name }) => {
            let name = name.trim();
            anyhow::ensure!(
                !name.is_empty(),
                "tenant name is empty: give a name, e.g. `portico tenant add Acme`"
            );
            let id = open_store(&settings).await?.create_tenant(name).await?;
            println!("{id}");
            Ok(())
        }
        Command::Dlq(DlqCommand::List {
            status,
            source,
            limit,
        }) => {
            let statuses = if status.is_empty() {
                vec!["failed".into(), "dead".into()]
            } else {
                status.clone()
            };
            dlq::list(
                &settings,
                dlq::ListArgs {
                    statuses,
                    source: source.clone(),
                    limit: *limit,
                },
            )
            .await
        }
        Command::Dlq(DlqCommand::Replay {
            id,
            all_failed,
            include_dead,
            source,
            since,
            until,
            dry_run,
        }) => {
            let args = dlq::ReplayArgs {
                id: *id,
                all_failed: *all_failed,
                include_dead: *include_dead,
                source: source.clone(),
                since: since.clone(),
                until: until.clone(),
                dry_run: *dry_run,
            };
            dlq::replay(&settings, args).await
        }
        Command::Source(SourceCommand::Add {
            tenant,
            kind,
            key,
            secrets,
            settings: setting_args,
        }) => {
            let store = open_store(&settings).await?;
            source::add(&store, *tenant, kind, key, secrets, setting_args).await
        }
        Command::Source(SourceCommand::List { tenant }) => {
            source::list(&open_store(&settings).await?, *tenant).await
        }
        Command::Source(SourceCommand::Set {
            kind,
            key,
            secrets,
            settings: setting_args,
            remove,
        }) => {
            let store = open_store(&settings).await?;
            source::set(&store, kind, key, secrets, setting_args, remove).await
        }
        Command::Source(SourceCommand::Rekey) => source::rekey(&open_store(&settings).await?).await,
    }
}
