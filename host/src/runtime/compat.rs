//! Adapters built against an earlier WIT: the host loads a 0.2.x component
//! with the 0.2 bindings and converts at this edge, so the rest of the host
//! speaks only the current contract. What 0.2 cannot say (a contact without
//! a phone, an edit, a status's recipient) it simply never says.

use super::bindings::exports::portico::adapter::plugin as cur_plugin;
use super::bindings::portico::adapter::{
    cache as cur_cache, directory as cur_dir, host as cur_host, outbound as cur_out, types as cur,
};
use super::bindings_v0_2::exports::portico::adapter::plugin as old_plugin;
use super::bindings_v0_2::portico::adapter::{
    cache as old_cache, directory as old_dir, host as old_host, outbound as old_out, types as old,
};
use super::host_api::HostState;
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

/// Which contract a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Current,
    V0_2,
}

impl World {
    /// The contract of `component`, from the version of the plugin interface it exports.
    pub fn of(engine: &wasmtime::Engine, component: &Component) -> World {
        let old = component
            .component_type()
            .exports(engine)
            .any(|(name, _)| name.starts_with("portico:adapter/plugin@0.2."));
        if old { World::V0_2 } else { World::Current }
    }
}

/// A component ready to instantiate, in its own contract.
#[derive(Clone)]
pub enum AdapterPre {
    Current(super::bindings::AdapterPre<HostState>),
    V0_2(super::bindings_v0_2::AdapterPre<HostState>),
}

impl AdapterPre {
    pub fn new(world: World, pre: InstancePre<HostState>) -> wasmtime::Result<AdapterPre> {
        Ok(match world {
            World::Current => AdapterPre::Current(super::bindings::AdapterPre::new(pre)?),
            World::V0_2 => AdapterPre::V0_2(super::bindings_v0_2::AdapterPre::new(pre)?),
        })
    }

    pub fn world(&self) -> World {
        match self {
            AdapterPre::Current(_) => World::Current,
            AdapterPre::V0_2(_) => World::V0_2,
        }
    }

    pub async fn instantiate_async(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Adapter> {
        Ok(match self {
            AdapterPre::Current(pre) => Adapter::Current(pre.instantiate_async(store).await?),
            AdapterPre::V0_2(pre) => Adapter::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// A live instance; every call takes and gives the current contract's types.
pub enum Adapter {
    Current(super::bindings::Adapter),
    V0_2(super::bindings_v0_2::Adapter),
}

type Items = Result<Vec<cur::Item>, cur::AdapterError>;
type Ops = Result<Vec<cur::DomainOp>, cur::AdapterError>;
type Outcomes = Result<Vec<cur_plugin::RowOutcome>, cur_plugin::BatchError>;

impl Adapter {
    pub async fn call_manifest(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<cur::PluginManifest> {
        match self {
            Adapter::Current(a) => a.portico_adapter_plugin().call_manifest(store).await,
            Adapter::V0_2(a) => Ok(manifest(
                a.portico_adapter_plugin().call_manifest(store).await?,
            )),
        }
    }

    pub async fn call_verify(
        &self,
        store: &mut Store<HostState>,
        req: &cur::Request,
    ) -> wasmtime::Result<cur::Verdict> {
        match self {
            Adapter::Current(a) => a.portico_adapter_plugin().call_verify(store, req).await,
            Adapter::V0_2(a) => {
                let v = a
                    .portico_adapter_plugin()
                    .call_verify(store, &request(req))
                    .await?;
                Ok(match v {
                    old::Verdict::Accept => cur::Verdict::Accept,
                    old::Verdict::Reject(why) => cur::Verdict::Reject(why),
                })
            }
        }
    }

    pub async fn call_parse(
        &self,
        store: &mut Store<HostState>,
        req: &cur::Request,
    ) -> wasmtime::Result<Items> {
        match self {
            Adapter::Current(a) => a.portico_adapter_plugin().call_parse(store, req).await,
            Adapter::V0_2(a) => {
                let r = a
                    .portico_adapter_plugin()
                    .call_parse(store, &request(req))
                    .await?;
                Ok(
                    r.map(|items| items.into_iter().map(item_from_old).collect())
                        .map_err(error),
                )
            }
        }
    }

    pub async fn call_map_to_domain(
        &self,
        store: &mut Store<HostState>,
        item: &cur::Item,
    ) -> wasmtime::Result<Ops> {
        match self {
            Adapter::Current(a) => {
                a.portico_adapter_plugin()
                    .call_map_to_domain(store, item)
                    .await
            }
            Adapter::V0_2(a) => {
                let r = a
                    .portico_adapter_plugin()
                    .call_map_to_domain(store, &item_to_old(item))
                    .await?;
                Ok(r.map(|ops| ops.into_iter().map(op).collect())
                    .map_err(error))
            }
        }
    }

    pub async fn call_deliver(
        &self,
        store: &mut Store<HostState>,
        kind: &str,
        rows: &[cur_plugin::OutboxRow],
    ) -> wasmtime::Result<Outcomes> {
        match self {
            Adapter::Current(a) => {
                a.portico_adapter_plugin()
                    .call_deliver(store, kind, rows)
                    .await
            }
            Adapter::V0_2(a) => {
                let rows: Vec<old_plugin::OutboxRow> = rows
                    .iter()
                    .map(|r| old_plugin::OutboxRow {
                        id: r.id,
                        payload: r.payload.clone(),
                    })
                    .collect();
                let r = a
                    .portico_adapter_plugin()
                    .call_deliver(store, kind, &rows)
                    .await?;
                Ok(match r {
                    Ok(outcomes) => Ok(outcomes.into_iter().map(outcome).collect()),
                    Err(old_plugin::BatchError::Retry(r)) => Err(cur_plugin::BatchError::Retry(r)),
                    Err(old_plugin::BatchError::Stop(m)) => Err(cur_plugin::BatchError::Stop(m)),
                })
            }
        }
    }

    pub async fn call_respond(
        &self,
        store: &mut Store<HostState>,
        req: &cur::Request,
        records: &[cur::RecordRef],
    ) -> wasmtime::Result<cur::Response> {
        match self {
            Adapter::Current(a) => {
                a.portico_adapter_plugin()
                    .call_respond(store, req, records)
                    .await
            }
            Adapter::V0_2(a) => {
                let records: Vec<old::RecordRef> = records
                    .iter()
                    .map(|r| old::RecordRef {
                        kind: r.kind.clone(),
                        id: r.id,
                        status: r.status.clone(),
                        external_id: r.external_id.clone(),
                        error: r.error.clone(),
                    })
                    .collect();
                let r = a
                    .portico_adapter_plugin()
                    .call_respond(store, &request(req), &records)
                    .await?;
                Ok(response(r))
            }
        }
    }

    pub async fn call_handle(
        &self,
        store: &mut Store<HostState>,
        req: &cur::Request,
    ) -> wasmtime::Result<Option<cur::Response>> {
        match self {
            Adapter::Current(a) => a.portico_adapter_plugin().call_handle(store, req).await,
            Adapter::V0_2(a) => Ok(a
                .portico_adapter_plugin()
                .call_handle(store, &request(req))
                .await?
                .map(response)),
        }
    }
}

fn request(r: &cur::Request) -> old::Request {
    old::Request {
        method: r.method.clone(),
        route: r.route.clone(),
        query: r.query.clone(),
        headers: r.headers.clone(),
        body: r.body.clone(),
    }
}

fn response(r: old::Response) -> cur::Response {
    cur::Response {
        status: r.status,
        headers: r.headers,
        body: r.body,
    }
}

fn manifest(m: old::PluginManifest) -> cur::PluginManifest {
    cur::PluginManifest {
        name: m.name,
        version: m.version,
        routes: m
            .routes
            .into_iter()
            .map(|r| cur::Route {
                method: r.method,
                path: r.path,
                kind: match r.kind {
                    old::RouteKind::Webhook => cur::RouteKind::Webhook,
                    old::RouteKind::Intake => cur::RouteKind::Intake,
                    old::RouteKind::Custom => cur::RouteKind::Custom,
                },
                auth: match r.auth {
                    old::RouteAuth::None => cur::RouteAuth::None,
                    old::RouteAuth::Admin => cur::RouteAuth::Admin,
                },
            })
            .collect(),
        outbox: m
            .outbox
            .into_iter()
            .map(|d| cur::OutboxDecl {
                kind: d.kind,
                max_batch: d.max_batch,
                immediate: d.immediate,
                idempotent: d.idempotent,
            })
            .collect(),
        warnings: m.warnings,
    }
}

fn item_from_old(i: old::Item) -> cur::Item {
    cur::Item {
        dedup_key: i.dedup_key,
        tenant: i.tenant.map(|t| cur::TenantRef {
            kind: t.kind,
            key: t.key,
        }),
        kind: i.kind,
        payload: i.payload,
    }
}

fn item_to_old(i: &cur::Item) -> old::Item {
    old::Item {
        dedup_key: i.dedup_key.clone(),
        tenant: i.tenant.as_ref().map(|t| old::TenantRef {
            kind: t.kind.clone(),
            key: t.key.clone(),
        }),
        kind: i.kind.clone(),
        payload: i.payload.clone(),
    }
}

fn error(e: old::AdapterError) -> cur::AdapterError {
    cur::AdapterError {
        code: e.code,
        message: e.message,
        retryable: e.retryable,
        fields: e.fields,
    }
}

/// A 0.2 contact: a phone and perhaps a name.
fn by_phone(phone: String, name: Option<String>) -> cur::ContactRef {
    cur::ContactRef {
        phone: Some(phone),
        user_id: None,
        parent_user_id: None,
        username: None,
        name,
    }
}

fn op(o: old::DomainOp) -> cur::DomainOp {
    match o {
        old::DomainOp::CreateLead(l) => cur::DomainOp::CreateLead(cur::Lead {
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
        old::DomainOp::QueueConversion(c) => cur::DomainOp::QueueConversion(cur::Conversion {
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
        old::DomainOp::RecordInbound(m) => cur::DomainOp::RecordInbound(cur::InboundMessage {
            channel: m.channel,
            contact: by_phone(m.contact_phone, m.contact_name),
            external_id: m.external_id,
            to_addr: m.to_addr,
            kind: m.kind,
            body: m.body,
            media_id: m.media_id,
            sent_at: m.sent_at,
            reply_to: m.reply_to,
        }),
        old::DomainOp::UpdateStatus(u) => cur::DomainOp::UpdateStatus(cur::StatusUpdate {
            channel: u.channel,
            external_id: u.external_id,
            status: match u.status {
                old::DeliveryStatus::Sent => cur::DeliveryStatus::Sent,
                old::DeliveryStatus::Delivered => cur::DeliveryStatus::Delivered,
                old::DeliveryStatus::Read => cur::DeliveryStatus::Read,
                old::DeliveryStatus::Played => cur::DeliveryStatus::Played,
                old::DeliveryStatus::Failed => cur::DeliveryStatus::Failed,
            },
            error: u.error,
            recipient: None,
        }),
        old::DomainOp::SendMessage(m) => cur::DomainOp::SendMessage(cur::OutboundMessage {
            channel: m.channel,
            tenant_id: m.tenant_id,
            to: by_phone(m.to_addr, None),
            from_addr: m.from_addr,
            body: m.body,
            case_id: m.case_id,
            idempotency_key: m.idempotency_key,
            outbox_kind: m.outbox_kind,
            payload: m.payload,
        }),
        old::DomainOp::Ignore(reason) => cur::DomainOp::Ignore(reason),
    }
}

fn outcome(o: old_plugin::RowOutcome) -> cur_plugin::RowOutcome {
    match o {
        old_plugin::RowOutcome::Delivered(id) => cur_plugin::RowOutcome::Delivered(id),
        old_plugin::RowOutcome::Rejected(r) => cur_plugin::RowOutcome::Rejected(r),
        old_plugin::RowOutcome::Retry(m) => cur_plugin::RowOutcome::Retry(m),
        old_plugin::RowOutcome::Unknown(m) => cur_plugin::RowOutcome::Unknown(m),
    }
}

// The 0.2 imports are the current ones under their old names.

impl old::Host for HostState {}

impl old_host::Host for HostState {
    fn log(&mut self, level: old_host::Level, message: String) {
        let level = match level {
            old_host::Level::Trace => cur_host::Level::Trace,
            old_host::Level::Debug => cur_host::Level::Debug,
            old_host::Level::Info => cur_host::Level::Info,
            old_host::Level::Warn => cur_host::Level::Warn,
            old_host::Level::Error => cur_host::Level::Error,
        };
        cur_host::Host::log(self, level, message)
    }

    fn config(&mut self, key: String) -> Option<String> {
        cur_host::Host::config(self, key)
    }

    fn secret(&mut self, key: String) -> Option<String> {
        cur_host::Host::secret(self, key)
    }
}

impl old_dir::Host for HostState {
    async fn source_key(&mut self, tenant_id: i64, kind: String) -> Option<String> {
        cur_dir::Host::source_key(self, tenant_id, kind).await
    }

    async fn source_secret(
        &mut self,
        kind: String,
        key: String,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        cur_dir::Host::source_secret(self, kind, key, name).await
    }

    async fn source_setting(
        &mut self,
        kind: String,
        key: String,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        cur_dir::Host::source_setting(self, kind, key, name).await
    }

    async fn sources(
        &mut self,
        kind: String,
        limit: u32,
    ) -> wasmtime::Result<Vec<old_dir::SourceRef>> {
        Ok(cur_dir::Host::sources(self, kind, limit)
            .await?
            .into_iter()
            .map(|s| old_dir::SourceRef {
                tenant_id: s.tenant_id,
                key: s.key,
            })
            .collect())
    }
}

impl old_cache::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        cur_cache::Host::get(self, key)
    }

    fn put(&mut self, key: String, value: String, ttl_ms: u32) {
        cur_cache::Host::put(self, key, value, ttl_ms)
    }

    fn remove(&mut self, key: String) {
        cur_cache::Host::remove(self, key)
    }
}

impl old_out::Host for HostState {
    async fn send(
        &mut self,
        req: old_out::OutboundRequest,
    ) -> wasmtime::Result<Result<old_out::OutboundResponse, old_out::OutboundError>> {
        let req = cur_out::OutboundRequest {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout_ms: req.timeout_ms,
        };
        Ok(match cur_out::Host::send(self, req).await? {
            Ok(r) => Ok(old_out::OutboundResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(cur_out::OutboundError::NotAllowed(m)) => {
                Err(old_out::OutboundError::NotAllowed(m))
            }
            Err(cur_out::OutboundError::Timeout(m)) => Err(old_out::OutboundError::Timeout(m)),
            Err(cur_out::OutboundError::Failed(m)) => Err(old_out::OutboundError::Failed(m)),
        })
    }
}
