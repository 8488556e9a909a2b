//! One webhook's instance: a fresh store and instance whose phases (verify,
//! parse, map-to-domain, handle) share it. Two webhooks never share one.
//!
//! Every call is armed with the plugin's deadline; a trap of any kind poisons
//! the instance, and the next call on the session starts a fresh one.

use super::bindings::portico::adapter::types;
use super::compat::Adapter;
use super::host_api::HostState;
use super::plugin::LoadedPlugin;
use crate::config::limits::{
    GUEST_STDERR_BYTES, MAX_ITEM_OUTPUT_BYTES, MAX_ITEMS_PER_DELIVERY, MAX_PARSE_OUTPUT_BYTES,
};
use crate::domain::{
    ContactRef, ContactUpdate, DomainOp, InboundMessage, MessageChange, MessageChangeKind,
    NewConversion, NewLead, OutboundMessage, ParsedItem, RecordRef, StatusUpdate, TenantRef,
};
use crate::store::types::MessageStatus;
use crate::telemetry::metrics::{self, CallTimer, Fault, Phase};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};

/// A call into an adapter that did not return normally.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("adapter call timed out after {0} ms (limits.call_timeout_ms)")]
    Timeout(u128),
    #[error("adapter exceeded its memory limit of {0} MiB (limits.memory_mb)")]
    MemoryLimit(u64),
    #[error("adapter trapped: {0}")]
    Trap(String),
    #[error("cannot instantiate adapter: {0}")]
    Instantiate(String),
    #[error("adapter output too large: {0}")]
    OutputTooLarge(String),
    #[error("plugin is busy: {0}")]
    Busy(String),
}

impl CallError {
    /// The error as a caller may read it: a trap's details (the adapter's
    /// stderr, paths on this machine) stay in the logs and the DLQ.
    pub fn public(&self) -> String {
        match self {
            CallError::Trap(_) => {
                "the adapter trapped; the server log has the details under this request's correlation id".into()
            }
            CallError::Instantiate(_) => {
                "the adapter could not be started; the server log has the details".into()
            }
            other => other.to_string(),
        }
    }

    /// Whether trying again can never help (the same input gives the same output).
    pub fn is_permanent(&self) -> bool {
        matches!(self, CallError::OutputTooLarge(_))
    }
}

/// An adapter's own error for an item or a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    /// Problems by field path, for a 400 on intake routes.
    pub fields: Vec<(String, String)>,
}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// An HTTP request as adapters see it.
pub type AdapterRequest = types::Request;
/// A custom route's answer.
pub type AdapterResponse = types::Response;

use super::bindings::exports::portico::adapter::plugin as plugin_api;

/// What became of one outbox record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// Accepted, with the provider's id when it gives one.
    Delivered(Option<String>),
    Rejected {
        code: String,
        message: String,
    },
    /// Certainly not delivered: try again later.
    Retry(String),
    /// Not final: ask again after `after_secs` (does not use up the retries).
    Wait {
        message: String,
        after_secs: u32,
    },
    /// The provider may have accepted it: never retried.
    Unknown(String),
}

/// A batch that did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    Retry {
        message: String,
        after_secs: Option<u32>,
    },
    Stop(String),
}

/// The outcome of verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject(String),
}

pub struct Session {
    /// The plugin's name, as metrics label it.
    plugin: Arc<str>,
    plugin_memory: u64,
    timeout: std::time::Duration,
    pre: super::compat::AdapterPre,
    env: Arc<super::host_api::PluginEnv>,
    engine: wasmtime::Engine,
    correlation_id: String,
    gate: Arc<tokio::sync::Semaphore>,
    max_concurrency: u32,
    /// This session's place among the plugin's instances (limits.max_instances),
    /// held from the first instance to the end of the session.
    instance_place: Option<tokio::sync::OwnedSemaphorePermit>,
    instances: Arc<tokio::sync::Semaphore>,
    max_instances: u32,
    live: Option<(Store<HostState>, Adapter)>,
}

impl Session {
    /// Instantiate `plugin` for one webhook.
    pub async fn start(plugin: &LoadedPlugin, correlation_id: &str) -> Result<Session, CallError> {
        let mut session = Session {
            plugin: plugin.spec.name.as_str().into(),
            plugin_memory: plugin.spec.limits.memory_bytes,
            timeout: plugin.spec.limits.call_timeout,
            pre: plugin.pre.clone(),
            env: plugin.env.clone(),
            engine: plugin.engine.clone(),
            correlation_id: correlation_id.to_string(),
            gate: plugin.gate.clone(),
            max_concurrency: plugin.spec.limits.max_concurrency,
            instance_place: None,
            instances: plugin.instances.clone(),
            max_instances: plugin.spec.limits.max_instances,
            live: None,
        };
        session.ensure_live().await?;
        Ok(session)
    }

    async fn ensure_live(&mut self) -> Result<(), CallError> {
        if self.live.is_some() {
            return Ok(());
        }
        // The plugin's own place first, the shared pool's slot after: a plugin
        // flooded with requests waits here without taking the others' slots.
        if self.instance_place.is_none() {
            let wait = self.timeout;
            match tokio::time::timeout(wait, self.instances.clone().acquire_owned()).await {
                Ok(Ok(place)) => self.instance_place = Some(place),
                _ => {
                    return Err(CallError::Busy(format!(
                        "all {} instances (limits.max_instances) stayed taken for {} ms",
                        self.max_instances,
                        wait.as_millis()
                    )));
                }
            }
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.plugin_memory as usize)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState::new(
            self.env.clone(),
            self.correlation_id.clone(),
            limits,
            GUEST_STDERR_BYTES,
        );
        let mut store = Store::new(&self.engine, state);
        store.data_mut().gate = Some(self.gate.clone());
        store.limiter(|s| &mut s.limits);
        // Checked every epoch tick: past the deadline the guest is interrupted,
        // before it the guest yields so a busy adapter cannot starve the runtime.
        store.epoch_deadline_callback(|mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        arm_store(&mut store, self.timeout);
        // Instantiating runs guest code (its start functions): it takes one of
        // the plugin's places (limits.max_concurrency) like any call.
        let running =
            match tokio::time::timeout(self.timeout, self.gate.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    return Err(CallError::Busy(format!(
                        "all {} places (limits.max_concurrency) stayed taken for {} ms",
                        self.max_concurrency,
                        self.timeout.as_millis()
                    )));
                }
            };
        let adapter = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        drop(running);
        self.live = Some((store, adapter));
        Ok(())
    }

    /// Turn a failed call into a [`CallError`] and drop the poisoned instance.
    fn fail(&mut self, error: wasmtime::Error) -> CallError {
        let (timed_out, stderr) = match &self.live {
            Some((store, _)) => (store.data().timed_out, store.data().stderr.contents()),
            None => (false, Default::default()),
        };
        self.live = None;
        if timed_out {
            metrics::adapter_fault(&self.plugin, Fault::Timeout);
            return CallError::Timeout(self.timeout.as_millis());
        }
        let text = format!("{error:?}");
        if text.contains("forcing trap when growing memory") {
            metrics::adapter_fault(&self.plugin, Fault::Memory);
            return CallError::MemoryLimit(self.plugin_memory / (1024 * 1024));
        }
        metrics::adapter_fault(&self.plugin, Fault::Trap);
        let mut what = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        let said = String::from_utf8_lossy(&stderr);
        let said = said.trim();
        if !said.is_empty() {
            let tail: String = said
                .chars()
                .rev()
                .take(1000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            what.push_str(&format!(" (adapter stderr: {tail})"));
        }
        CallError::Trap(what)
    }

    /// The live instance, instantiating a fresh one after a trap.
    async fn live(&mut self) -> Result<&mut (Store<HostState>, Adapter), CallError> {
        self.ensure_live().await?;
        match self.live.as_mut() {
            Some(live) => Ok(live),
            None => Err(CallError::Instantiate("instance vanished".into())),
        }
    }

    pub async fn manifest(&mut self) -> Result<types::PluginManifest, CallError> {
        let _timer = CallTimer::start(self.plugin.clone(), Phase::Manifest);
        let span = tracing::info_span!("adapter", otel.name = %format!("adapter.{}", Phase::Manifest.as_str()), plugin = %self.plugin, phase = Phase::Manifest.as_str());
        let timeout = self.timeout;
        let (gate, max) = (self.gate.clone(), self.max_concurrency);
        let (store, adapter) = self.live().await?;
        enter(store, timeout, gate, max).await?;
        let r = adapter.call_manifest(&mut *store).instrument(span).await;
        store.data_mut().permit = None;
        r.map_err(|e| self.fail(e))
    }

    pub async fn verify(&mut self, req: &AdapterRequest) -> Result<Verdict, CallError> {
        let _timer = CallTimer::start(self.plugin.clone(), Phase::Verify);
        let span = tracing::info_span!("adapter", otel.name = %format!("adapter.{}", Phase::Verify.as_str()), plugin = %self.plugin, phase = Phase::Verify.as_str());
        let timeout = self.timeout;
        let (gate, max) = (self.gate.clone(), self.max_concurrency);
        let (store, adapter) = self.live().await?;
        enter(store, timeout, gate, max).await?;
        let r = adapter.call_verify(&mut *store, req).instrument(span).await;
        store.data_mut().permit = None;
        match r {
            Ok(types::Verdict::Accept) => Ok(Verdict::Accept),
            Ok(types::Verdict::Reject(why)) => Ok(Verdict::Reject(why)),
            Err(e) => Err(self.fail(e)),
        }
    }

    pub async fn parse(
        &mut self,
        req: &AdapterRequest,
    ) -> Result<Result<Vec<ParsedItem>, AdapterError>, CallError> {
        let _timer = CallTimer::start(self.plugin.clone(), Phase::Parse);
        let span = tracing::info_span!("adapter", otel.name = %format!("adapter.{}", Phase::Parse.as_str()), plugin = %self.plugin, phase = Phase::Parse.as_str());
        let timeout = self.timeout;
        let (gate, max) = (self.gate.clone(), self.max_concurrency);
        let (store, adapter) = self.live().await?;
        enter(store, timeout, gate, max).await?;
        let r = adapter.call_parse(&mut *store, req).instrument(span).await;
        store.data_mut().permit = None;
        match r {
            Ok(Ok(items)) => {
                let bytes: usize = items
                    .iter()
                    .map(|i| i.payload.len() + i.dedup_key.len())
                    .sum();
                if items.len() > MAX_ITEMS_PER_DELIVERY || bytes > MAX_PARSE_OUTPUT_BYTES {
                    return Err(CallError::OutputTooLarge(format!(
                        "parse returned {} items of {bytes} bytes; the limits are {MAX_ITEMS_PER_DELIVERY} items and {MAX_PARSE_OUTPUT_BYTES} bytes",
                        items.len()
                    )));
                }
                Ok(Ok(items.into_iter().map(item_from_wit).collect()))
            }
            Ok(Err(e)) => Ok(Err(error_from_wit(e))),
            Err(e) => Err(self.fail(e)),
        }
    }

    pub async fn map_to_domain(
        &mut self,
        item: &ParsedItem,
    ) -> Result<Result<Vec<DomainOp>, AdapterError>, CallError> {
        let _timer = CallTimer::start(self.plugin.clone(), Phase::Map);
        let span = tracing::info_span!("adapter", otel.name = %format!("adapter.{}", Phase::Map.as_str()), plugin = %self.plugin, phase = Phase::Map.as_str());
        let timeout = self.timeout;
        let wit_item = types::Item {
            dedup_key: item.dedup_key.clone(),
            tenant: item.tenant.as_ref().map(|t| types::TenantRef {
                kind: t.kind.clone(),
                key: t.key.clone(),
            }),
            kind: item.kind.clone(),
            payload: item.payload.clone(),
        };
        let (gate, max) = (self.gate.clone(), self.max_concurrency);
        let (store, adapter) = self.live().await?;
        enter(store, timeout, gate, max).await?;
        let r = adapter
            .call_map_to_domain(&mut *store, &wit_item)
            .instrument(span)
            .await;
        store.data_mut().permit = None;
        match r {
            Ok(Ok(ops)) => {
                let ops: Vec<DomainOp> = ops.into_iter().map(op_from_wit).collect();
                let bytes: usize = ops.iter().map(DomainOp::size).sum();
                if bytes > MAX_ITEM_OUTPUT_BYTES {
                    return Err(CallError::OutputTooLarge(format!(
                        "map-to-domain returned {bytes} bytes of operations; the limit is {MAX_ITEM_OUTPUT_BYTES}"
                    )));
                }
                Ok(Ok(ops))
            }
            Ok(Err(e)) => Ok(Err(error_from_wit(e))),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Deliver outbox records; one outcome per row.
    pub async fn deliver(
        &mut self,
        kind: &str,
        rows: &[(i64, Vec<u8>)],
    ) -> Result<Result<Vec<RowOutcome>, BatchError>, CallError> {
        let _timer = CallTimer::start(self.plugin.clone(), Phase::Deliver);
        let span = tracing::info_span!("adapter", otel.name = %format!("adapter.{}", Phase::Deliver.as_str()), plugin = %self.plugin, phase = Phase::Deliver.as_str());
        let timeout = self.timeout;
        let wit_rows: Vec<plugin_api::OutboxRow> = rows
            .iter()
            .map(|(id, payload)| plugin_api::OutboxRow {
                id: *id,
                payload: payload.clone(),
            })
            .collect();
        let (gate, max) = (self.gate.clone(), self.max_concurrency);
        let (store, adapter) = self.live().await?;
        enter(store, timeout, gate, max).await?;
        let r = adapter
            .call_deliver(&mut *store, kind, &wit_rows)
            .instrument(span)
            .await;
        store.data_mut().permit = None;
        match r {
            Ok(Ok(outcomes)) => Ok(Ok(outcomes
                .into_iter()
                .map(|o| match o {
                    plugin_api::RowOutcome::Delivered(id) => RowOutcome::Delivered(id),
                    plugin_api::RowOutcome::Unknown(message) => RowOutcome::Unknown(message),
                    plugin_api::RowOutcome::Rejected((code, message)) => {
                        RowOutcome::Rejected { code, message }
                    }
                    plugin_api::RowOutcome::Retry(message) => RowOutcome::Retry(message),
                    plugin_api::RowOutcome::Wait((message, after_secs)) => RowOutcome::Wait {
                        message,
                        after_secs,
                    },
                })
                .collect())),
            Ok(Err(plugin_api::BatchError::Retry((message, after)))) => {
                Ok(Err(BatchError::Retry {
                    message,
                    after_secs: after,
                }))
            }
            Ok(Err(plugin_api::BatchError::Stop(message))) => Ok(Err(BatchError::Stop(message))),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The answer to an intake request, from the records it made or found.
    pub async fn respond(
        &mut self,
        req: &AdapterRequest,
        records: &[RecordRef],
    ) -> Result<AdapterResponse, CallError> {
        let _timer = CallTimer::start(self.plugin.clone(), Phase::Respond);
        let span = tracing::info_span!("adapter", otel.name = %format!("adapter.{}", Phase::Respond.as_str()), plugin = %self.plugin, phase = Phase::Respond.as_str());
        let timeout = self.timeout;
        let wit_records: Vec<types::RecordRef> = records
            .iter()
            .map(|r| types::RecordRef {
                kind: r.kind.as_str().to_string(),
                id: r.id,
                status: r.status.clone(),
                external_id: r.external_id.clone(),
                error: r.error.clone(),
            })
            .collect();
        let (gate, max) = (self.gate.clone(), self.max_concurrency);
        let (store, adapter) = self.live().await?;
        enter(store, timeout, gate, max).await?;
        let r = adapter
            .call_respond(&mut *store, req, &wit_records)
            .instrument(span)
            .await;
        store.data_mut().permit = None;
        r.map_err(|e| self.fail(e))
    }

    pub async fn handle(
        &mut self,
        req: &AdapterRequest,
    ) -> Result<Option<AdapterResponse>, CallError> {
        let _timer = CallTimer::start(self.plugin.clone(), Phase::Handle);
        let span = tracing::info_span!("adapter", otel.name = %format!("adapter.{}", Phase::Handle.as_str()), plugin = %self.plugin, phase = Phase::Handle.as_str());
        let timeout = self.timeout;
        let (gate, max) = (self.gate.clone(), self.max_concurrency);
        let (store, adapter) = self.live().await?;
        enter(store, timeout, gate, max).await?;
        let r = adapter.call_handle(&mut *store, req).instrument(span).await;
        store.data_mut().permit = None;
        r.map_err(|e| self.fail(e))
    }
}

/// Take a place in the plugin's bulkhead (waiting at most `timeout`), then arm the deadline.
async fn enter(
    store: &mut Store<HostState>,
    timeout: std::time::Duration,
    gate: Arc<tokio::sync::Semaphore>,
    max: u32,
) -> Result<(), CallError> {
    match tokio::time::timeout(timeout, gate.acquire_owned()).await {
        Ok(Ok(permit)) => store.data_mut().permit = Some(permit),
        _ => {
            return Err(CallError::Busy(format!(
                "all {max} places (limits.max_concurrency) stayed taken for {} ms",
                timeout.as_millis()
            )));
        }
    }
    arm_store(store, timeout);
    Ok(())
}

fn arm_store(store: &mut Store<HostState>, timeout: std::time::Duration) {
    let data = store.data_mut();
    data.deadline = Instant::now() + timeout;
    data.timed_out = false;
    store.set_epoch_deadline(1);
}

fn item_from_wit(i: types::Item) -> ParsedItem {
    ParsedItem {
        dedup_key: i.dedup_key,
        tenant: i.tenant.map(|t| TenantRef {
            kind: t.kind,
            key: t.key,
        }),
        kind: i.kind,
        payload: i.payload,
    }
}

fn error_from_wit(e: types::AdapterError) -> AdapterError {
    AdapterError {
        code: e.code,
        message: e.message,
        retryable: e.retryable,
        fields: e.fields,
    }
}

fn op_from_wit(op: types::DomainOp) -> DomainOp {
    match op {
        types::DomainOp::CreateLead(l) => DomainOp::CreateLead(NewLead {
            source: l.source,
            external_id: l.external_id,
            form_id: l.form_id,
            ad_id: l.ad_id,
            campaign_id: l.campaign_id,
            full_name: l.full_name,
            email: l.email,
            phone: l.phone,
            fields_json: l.fields_json,
        }),
        types::DomainOp::QueueConversion(c) => DomainOp::QueueConversion(NewConversion {
            click_id_kind: c.click_id_kind,
            click_id: c.click_id,
            conversion_time: c.conversion_time,
            value: c.value,
            currency: c.currency,
            conversion_action: c.conversion_action,
            order_id: c.order_id,
            idempotency_key: c.idempotency_key,
            tenant_id: c.tenant_id,
            upload: c.upload,
        }),
        types::DomainOp::RecordInbound(m) => DomainOp::RecordInbound(InboundMessage {
            channel: m.channel,
            contact: contact_from_wit(m.contact),
            external_id: m.external_id,
            to_addr: m.to_addr,
            kind: m.kind,
            body: m.body,
            media_id: m.media_id,
            sent_at: m.sent_at,
            reply_to: m.reply_to,
        }),
        types::DomainOp::UpdateStatus(u) => DomainOp::UpdateStatus(StatusUpdate {
            channel: u.channel,
            external_id: u.external_id,
            status: match u.status {
                types::DeliveryStatus::Sent => MessageStatus::Sent,
                types::DeliveryStatus::Delivered => MessageStatus::Delivered,
                types::DeliveryStatus::Read => MessageStatus::Read,
                types::DeliveryStatus::Played => MessageStatus::Played,
                types::DeliveryStatus::Failed => MessageStatus::Failed,
            },
            error: u.error,
            recipient: u.recipient.map(contact_from_wit),
        }),
        types::DomainOp::SendMessage(m) => DomainOp::SendMessage(OutboundMessage {
            channel: m.channel,
            tenant_id: m.tenant_id,
            to: contact_from_wit(m.to),
            from_addr: m.from_addr,
            body: m.body,
            case_id: m.case_id,
            idempotency_key: m.idempotency_key,
            outbox_kind: m.outbox_kind,
            payload: m.payload,
        }),
        types::DomainOp::ChangeMessage(c) => DomainOp::ChangeMessage(MessageChange {
            channel: c.channel,
            external_id: c.external_id,
            change: match c.change {
                types::MessageChangeKind::Edited(body) => MessageChangeKind::Edited(body),
                types::MessageChangeKind::Revoked => MessageChangeKind::Revoked,
            },
            at: c.at,
        }),
        types::DomainOp::UpdateContact(u) => DomainOp::UpdateContact(ContactUpdate {
            channel: u.channel,
            previous: contact_from_wit(u.previous),
            current: contact_from_wit(u.current),
        }),
        types::DomainOp::Ignore(reason) => DomainOp::Ignore { reason },
    }
}

/// A contact-ref with blank fields read as absent (providers omit, but adapters may pass "").
fn contact_from_wit(c: types::ContactRef) -> ContactRef {
    let present = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
    ContactRef {
        phone: present(c.phone),
        user_id: present(c.user_id),
        parent_user_id: present(c.parent_user_id),
        username: present(c.username),
        name: present(c.name),
    }
}
