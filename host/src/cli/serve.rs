//! `portico serve`: open the store, load the plugins, serve until SIGINT/SIGTERM.

use crate::config::limits::Tunables;
use crate::config::plugins::{FileCheck, load_plugins_file};
use crate::config::settings::env_bool;
use crate::config::{IntegrationToggles, Settings};
use crate::http::{AppState, router};
use crate::jobs::worker;
use crate::runtime::Runtime;
use crate::runtime::engine::Recompile;
use anyhow::Context;
use std::sync::Arc;

/// Serve; `recompile` says what a changed plugin's compilation may reuse.
pub async fn serve(settings: &Settings, recompile: Recompile) -> anyhow::Result<()> {
    let file = load_plugins_file(&settings.plugins_path, FileCheck::Require)?;
    crate::telemetry::metrics::install().context("cannot start the metrics recorder")?;
    let store = super::open_store(settings).await?;
    tracing::info!(
        database = %settings.database_url,
        shared = !store.single_process(),
        "database open and migrated"
    );
    // Stops here when a key is malformed or sealed secrets have no key to open them.
    let directory = super::source::directory(&store).await?;
    let secret_keys = directory.keys.clone();
    let runtime = Arc::new(
        Runtime::new(file.cache_dir(), Some(directory), recompile)
            .context("cannot start the wasm runtime")?,
    );
    let started = std::time::Instant::now();
    let set = runtime.load_all(&file).await;
    tracing::info!(
        plugins = set.slots.len(),
        ms = started.elapsed().as_millis() as u64,
        "plugins loaded"
    );
    // Hot reload: plugins.toml and every .wasm are watched from here on.
    crate::runtime::watch::spawn(runtime.clone(), file.path.clone())
        .context("cannot watch plugin files")?;

    let meta_enabled = set.slot("meta").is_some_and(|s| s.spec.enabled);
    let toggles = IntegrationToggles {
        meta: meta_enabled,
        google_ads: env_bool("GOOGLE_ADS_OFFLINE_ENABLED", false)?,
        whatsapp: env_bool("WHATSAPP_WEBHOOK_ENABLED", false)?,
    };
    let credentials = crate::http::auth::Credentials::new(
        settings.admin_token.as_deref(),
        std::env::var("PORTICO_INTAKE_TOKEN").ok().as_deref(),
    );
    if !credentials.has_admin() {
        tracing::warn!("PORTICO_ADMIN_TOKEN is not set: admin endpoints answer 401 to everyone");
    }
    if !credentials.has_admin() && !credentials.has_intake() {
        tracing::warn!(
            "neither PORTICO_INTAKE_TOKEN nor PORTICO_ADMIN_TOKEN is set: intake routes (sends, conversions) answer 401 to everyone"
        );
    }
    let tunables = Tunables::from_env(&|k| std::env::var(k).ok())?;
    crate::jobs::retry::configure_from_env().map_err(anyhow::Error::msg)?;
    // One process owns a SQLite file: whatever leases it finds are a dead process's.
    // On a shared database this does nothing: expired leases are claimed anyway.
    let released = store.release_leases().await?;
    if released > 0 {
        tracing::warn!(
            leases = released,
            "found events or outbox records claimed by a process that is gone; the workers take them over"
        );
    }
    let owner = format!(
        "pid{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let pipeline = crate::jobs::pipeline::Pipeline::new(
        store.clone(),
        owner.clone(),
        tunables.lease,
        tunables.ingest_slots,
    );
    worker::spawn(
        store.clone(),
        runtime.clone(),
        tunables,
        owner.clone(),
        pipeline.clone(),
    );
    let outbox = crate::jobs::outbox::spawn(
        store.clone(),
        runtime.clone(),
        tunables.outbox_poll,
        owner.clone(),
        tunables.lease,
    );
    let state = AppState {
        runtime,
        store,
        toggles,
        credentials,
        secret_keys,
        tunables,
        owner,
        outbox,
        pipeline,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--listen/PORTICO_LISTEN): is another process using it?",
                settings.listen
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}");
    let store = state.store.clone();
    let owner = state.owner.clone();
    let limits = tunables.server;
    crate::http::listener::serve(listener, router(state), limits, shutdown_signal()).await;
    // Requests are answered; what this process leased and has not finished
    // goes to the others (or to this one's next start) at once.
    match store.release_own_leases(&owner).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            leases = n,
            "unfinished work released to the other processes"
        ),
        Err(e) => {
            tracing::warn!("cannot release this process's leases (they expire by themselves): {e}")
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
