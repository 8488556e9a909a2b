//! Meta Lead Ads adapter: a thin component wrapper over [`logic`].
//!
//! Config (plugins.toml): `verify_signature` (default true), `graph_base_url`
//! (default https://graph.facebook.com), `graph_api_version` (default 25.0).
//! Secrets: `app_secret` (comma-separated for rotation), `verify_token` (GET
//! handshake), `page_access_token` (Graph lead retrieval; unset → ids only). A page's
//! own `page_access_token` (`portico source add --kind meta --key PAGE_ID --secret
//! page_access_token=...`) is used before the host-wide one.

pub mod logic;

/// The operation a mapped lead becomes (shared by the component and the native benchmark).
pub fn lead_op(lead: logic::MappedLead) -> portico_sdk::DomainOp {
    let fields_json = lead.fields_json();
    portico_sdk::DomainOp::CreateLead(portico_sdk::Lead {
        source: logic::LEAD_SOURCE.into(),
        external_id: lead.external_id,
        form_id: lead.form_id,
        ad_id: lead.ad_id,
        campaign_id: lead.campaign_id,
        full_name: lead.full_name,
        email: lead.email,
        phone: lead.phone,
        fields_json,
    })
}

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::logic::{self, Mapped};
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::{
        AdapterError, DomainOp, Item, Manifest, RecordRef, Request, Response, Route, RouteKind,
        Verdict, directory, host, http, outbound, signature,
    };

    struct MetaAdapter;

    /// The crate version, with `+TAG` when built with PORTICO_BUILD_TAG=TAG
    /// (tells two dev builds apart in health).
    fn version() -> String {
        match option_env!("PORTICO_BUILD_TAG") {
            Some(tag) if !tag.is_empty() => format!("{}+{tag}", env!("CARGO_PKG_VERSION")),
            _ => env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    fn verification_on() -> bool {
        host::config_bool("verify_signature", true)
    }

    impl Guest for MetaAdapter {
        fn manifest() -> Manifest {
            let mut warnings = Vec::new();
            if !verification_on() {
                warnings.push(
                    "signature verification is OFF (META_VERIFY_SIGNATURE=false): anyone can post leads"
                        .to_string(),
                );
            } else if host::secret_list("app_secret").is_empty() {
                warnings.push(
                    "META_APP_SECRET is not set: every POST will be refused with 401".to_string(),
                );
            }
            Manifest {
                name: "meta".into(),
                version: version(),
                routes: vec![
                    Route {
                        method: "POST".into(),
                        path: "webhook".into(),
                        kind: RouteKind::Webhook,
                        auth: portico_sdk::RouteAuth::None,
                    },
                    Route {
                        method: "GET".into(),
                        path: "webhook".into(),
                        kind: RouteKind::Custom,
                        auth: portico_sdk::RouteAuth::None,
                    },
                ],
                outbox: vec![],
                warnings,
            }
        }

        fn verify(req: Request) -> Verdict {
            if !verification_on() {
                return Verdict::Accept;
            }
            let secrets = host::secret_list("app_secret");
            let header = http::header(&req, "x-hub-signature-256");
            match signature::verify_hub_sha256(header, &secrets, &req.body) {
                Ok(()) => Verdict::Accept,
                Err(e) => Verdict::Reject(e.to_string()),
            }
        }

        fn parse(req: Request) -> Result<Vec<Item>, AdapterError> {
            let items = logic::parse_delivery(&req.body)?;
            Ok(portico_sdk::into_items(items, logic::TENANT_KIND))
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            let mut lead = match logic::map_item(&item.kind, &item.payload)? {
                Mapped::Lead(lead) => lead,
                Mapped::Ignore(reason) => return Ok(vec![DomainOp::Ignore(reason)]),
            };
            // The page's own token (a page token reads only its own page's
            // leads), else the host-wide one; without either the lead is stored
            // with the webhook's ids only.
            let token = match &item.tenant {
                Some(page) => directory::secret_for(&page.kind, &page.key, "page_access_token"),
                None => host::secret("page_access_token"),
            };
            if let Some(token) = token {
                let graph = fetch_lead(&lead.external_id, &token)?;
                logic::enrich(&mut lead, graph);
            }
            Ok(vec![crate::lead_op(lead)])
        }

        fn handle(req: Request) -> Option<Response> {
            http::hub_handshake(&req, host::secret("verify_token").as_deref())
        }

        fn deliver(
            kind: String,
            _rows: Vec<portico_sdk::OutboxRow>,
        ) -> Result<Vec<portico_sdk::RowOutcome>, portico_sdk::BatchError> {
            portico_sdk::no_outbox(&kind)
        }

        fn respond(_req: Request, records: Vec<RecordRef>) -> Response {
            portico_sdk::respond_records(&records)
        }
    }

    /// The lead's details from the Graph API; every failure is the item's, never the delivery's.
    fn fetch_lead(leadgen_id: &str, token: &str) -> Result<logic::GraphLead, AdapterError> {
        let base =
            host::config("graph_base_url").unwrap_or_else(|| "https://graph.facebook.com".into());
        let version = host::config("graph_api_version").unwrap_or_else(|| "25.0".into());
        let url = logic::graph_lead_url(&base, &version, leadgen_id, token);
        let answer =
            outbound::get(&url, &[("accept", "application/json")], Some(4_000)).map_err(|e| {
                let code = match e {
                    outbound::OutboundError::NotAllowed(_) => "host_not_allowed",
                    outbound::OutboundError::Timeout(_) => "graph_timeout",
                    outbound::OutboundError::Failed(_) => "graph_unreachable",
                };
                AdapterError::retryable(code, outbound::describe(&e))
            })?;
        logic::read_graph_answer(answer.status, &answer.body).map_err(|f| AdapterError {
            code: f.code.into(),
            message: f.message,
            retryable: f.retryable,
            fields: Vec::new(),
        })
    }

    portico_sdk::export_adapter!(MetaAdapter);
}
