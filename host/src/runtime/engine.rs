//! The one wasmtime engine and linker every plugin shares.

use super::bindings::Adapter;
use super::cache::FunctionCache;
use super::host_api::HostState;
use crate::config::limits::{EPOCH_TICK, MAX_CONCURRENT_INSTANCES, MEMORY_MB_RANGE};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// What `portico dev` keeps of compiled functions for recompiles (a Python
/// and a JavaScript adapter together keep about 100 MiB).
const FUNCTION_CACHE_BYTES: usize = 256 << 20;

/// How a changed component is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompile {
    /// From scratch: nothing is kept between compilations (serve: adapters
    /// change seldom, and memory is the operator's).
    Whole,
    /// Reusing every function that did not change ([`FunctionCache`]): the
    /// development loop, where the same adapter is rebuilt again and again.
    ReuseFunctions,
}

/// Build the engine: component model, epoch interruption, pooling allocator.
pub fn build_engine(recompile: Recompile) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Deadlines are enforced by epochs: cheap checks at loop heads and calls.
    config.epoch_interruption(true);

    let mut pool = PoolingAllocationConfig::default();
    // Slots for instances alive at once; a webhook holds one for its duration.
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES);
    // A Rust wasip2 component holds a few core instances (the program plus
    // WASI shims) and up to two memories; size the pools for that.
    pool.total_core_instances(MAX_CONCURRENT_INSTANCES * 8);
    pool.total_memories(MAX_CONCURRENT_INSTANCES * 2);
    pool.total_tables(MAX_CONCURRENT_INSTANCES * 4);
    // The largest memory a plugin may be granted; each plugin's own ceiling is
    // enforced below this by the store limiter. The reservation per memory stays
    // at wasmtime's default (4 GiB + guard): that lets compiled code skip bounds
    // checks; a 1 GiB reservation made the Meta benchmark ~3% slower and saved
    // only address space.
    pool.max_memory_size((MEMORY_MB_RANGE.1 as usize) * 1024 * 1024);
    // Resetting a slot for its next instance is the per-webhook cost we pay most
    // often (`cargo bench -p portico --bench adapter`, Meta verify+parse+map of one
    // lead: 72 µs as first configured, 32 µs with the three settings below).
    // With PAGEMAP_SCAN (Linux >= 6.7) wasmtime resets only the pages the last
    // instance wrote, by hand, and madvises nothing while they fit in
    // `keep_resident`: no page faults and no TLB shootdowns on the next delivery.
    // A small delivery writes under 64 KiB (64 KiB..16 MiB measured the same);
    // 1 MiB leaves room for batches (200 leads: 8% faster than 64 KiB) and bounds
    // what an idle slot keeps resident to 1 MiB.
    // Without the scan, `keep_resident` bytes from the bottom of memory are
    // memset whether the guest touched them or not, which cost more than the page
    // faults it saves (1 MiB: 63 µs, 0: 46 µs): keep nothing, madvise it all.
    let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
    if pagemap {
        pool.pagemap_scan(Enabled::Yes);
        pool.linear_memory_keep_resident(1 << 20);
    } else {
        pool.pagemap_scan(Enabled::No);
        pool.linear_memory_keep_resident(0);
    }
    // Tables are reset the same way. With wasmtime's default (keep 0) they were
    // madvised after every instance and faulted back in by the next: keep up to
    // 64 KiB of each (8192 pointer-size entries), 43 -> 32 µs per one-lead
    // delivery with the scan on.
    pool.table_keep_resident(64 << 10);
    tracing::debug!(pagemap_scan = pagemap, "wasm pooling allocator configured");
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

    if recompile == Recompile::ReuseFunctions {
        config.enable_incremental_compilation(std::sync::Arc::new(FunctionCache::new(
            FUNCTION_CACHE_BYTES,
        )))?;
    }

    let engine = Engine::new(&config)?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Advance the epoch every [`EPOCH_TICK`] for as long as the process lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("portico-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| {
            tracing::error!("cannot start the epoch ticker, call deadlines are off: {e}")
        });
}

/// The linker: WASI p2 (denying everything) plus the host interface of the world.
pub fn build_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    // Rust's std imports wasi:cli and wasi:io even when an adapter uses neither.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Adapter::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    // The same imports under their 0.2 names, for adapters built against 0.2.x.
    super::bindings_v0_2::Adapter::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )?;
    Ok(linker)
}
