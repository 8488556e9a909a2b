//! `portico dlq list` and `portico dlq replay`.

use crate::config::Settings;
use crate::config::plugins::{FileCheck, load_plugins_file};
use crate::jobs::replay::{Replayer, replay_event, replay_matching};
use crate::runtime::Runtime;
use crate::store::types::EventStatus;
use crate::store::{Durability, EventFilter, Timestamp};
use anyhow::{Context, bail};
use std::time::Duration;

/// A replay from the command line holds its leases like the worker, for as long.
fn replayer(owner: &str) -> Replayer<'_> {
    Replayer {
        owner,
        lease: Duration::from_secs(300),
        durability: Durability::Synced,
    }
}

fn cli_owner() -> String {
    format!("cli-pid{}", std::process::id())
}

fn parse_time(flag: &str, value: Option<String>) -> anyhow::Result<Option<Timestamp>> {
    value
        .map(|v| Timestamp::parse(&v).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
        .transpose()
}

pub struct ListArgs {
    pub statuses: Vec<String>,
    pub source: Option<String>,
    pub limit: i64,
}

pub async fn list(settings: &Settings, args: ListArgs) -> anyhow::Result<()> {
    let store = super::open_store(settings).await?;
    let statuses = args
        .statuses
        .iter()
        .map(|s| {
            s.parse::<EventStatus>()
                .map_err(|e| anyhow::anyhow!("--status: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let filter = EventFilter {
        statuses,
        source: args.source,
        limit: args.limit,
        ..Default::default()
    };
    let events = store.list_events(&filter).await?;
    println!(
        "{:>6}  {:<10} {:<8} {:<9} {:>3}  {:<24} {:<36}  {:<28}  error",
        "id", "source", "kind", "status", "try", "created_at", "correlation_id", "dedup_key"
    );
    for e in &events {
        let error: String = e.error.as_deref().unwrap_or("").chars().take(160).collect();
        println!(
            "{:>6}  {:<10} {:<8} {:<9} {:>3}  {:<24} {:<36}  {:<28}  {error}",
            e.id,
            e.source,
            e.kind,
            e.status,
            e.attempts,
            e.created_at,
            e.correlation_id,
            e.dedup_key.as_deref().unwrap_or("-"),
        );
    }
    eprintln!("{} event(s)", events.len());
    Ok(())
}

pub struct ReplayArgs {
    pub id: Option<i64>,
    pub all_failed: bool,
    pub include_dead: bool,
    pub source: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub dry_run: bool,
}

pub async fn replay(settings: &Settings, args: ReplayArgs) -> anyhow::Result<()> {
    let store = super::open_store(settings).await?;
    let file = load_plugins_file(&settings.plugins_path, FileCheck::Require)?;
    let directory = super::source::directory(&store).await?;
    let runtime = Runtime::new(
        file.cache_dir(),
        Some(directory),
        crate::runtime::engine::Recompile::Whole,
    )
    .context("cannot start the wasm runtime")?;
    let plugins = runtime.load_all(&file).await;
    if let Some(id) = args.id {
        let event = store
            .get_event(id)
            .await?
            .with_context(|| format!("no event {id}; see `portico dlq list`"))?;
        if args.dry_run {
            println!(
                "would replay event {id} ({} {}, {})",
                event.source, event.kind, event.status
            );
            return Ok(());
        }
        let owner = cli_owner();
        let outcome = replay_event(&store, &plugins, &event, replayer(&owner)).await;
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        if !outcome.succeeded() {
            bail!("event {id} is still not processed");
        }
        return Ok(());
    }
    if !args.all_failed {
        bail!(
            "say which events: `portico dlq replay ID` or `portico dlq replay --all-failed [--include-dead]`"
        );
    }
    let mut statuses = vec![EventStatus::Failed];
    if args.include_dead {
        statuses.push(EventStatus::Dead);
    }
    let filter = EventFilter {
        statuses,
        source: args.source,
        since: parse_time("--since", args.since)?,
        until: parse_time("--until", args.until)?,
        ..Default::default()
    };
    let owner = cli_owner();
    let report = replay_matching(&store, &plugins, &filter, args.dry_run, replayer(&owner)).await?;
    if args.dry_run {
        println!(
            "would replay {} event(s): {:?}",
            report.matched, report.event_ids
        );
    } else {
        println!(
            "replayed {} event(s): {} processed, {} still failing",
            report.matched, report.succeeded, report.failed
        );
    }
    Ok(())
}
