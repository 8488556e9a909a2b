//! The one wasmtime engine and linker every plugin shares.

use super::bindings::Adapter;
use super::host_api::HostState;
use crate::config::limits::{EPOCH_TICK, MAX_CONCURRENT_INSTANCES, MEMORY_MB_RANGE};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Build the engine: component model, epoch interruption, pooling allocator.
pub fn build_engine() -> anyhow::Result<Engine> {
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
    // enforced below this by the store limiter.
    pool.max_memory_size((MEMORY_MB_RANGE.1 as usize) * 1024 * 1024);
    // Keep a little of each memory resident between uses: instantiation is the
    // per-webhook cost we pay most often.
    pool.linear_memory_keep_resident(1 << 20);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

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
    Ok(linker)
}
