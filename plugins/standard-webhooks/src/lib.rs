//! Standard Webhooks adapter: a thin component wrapper over [`logic`].
//!
//! Mount: /api/integrations/standard/webhook. Secrets: `signing_secret`
//! (`whsec_...`, comma-separated for rotation). Tenant: lead_sources kind
//! `standard`, key = `data.source_key`.

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::logic;
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::{
        AdapterError, DomainOp, Item, Lead, Manifest, RecordRef, Request, Response, Route,
        RouteKind, Verdict, host, http,
    };

    struct StandardWebhooks;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    impl Guest for StandardWebhooks {
        fn manifest() -> Manifest {
            let mut warnings = Vec::new();
            if host::secret_list("signing_secret").is_empty() {
                warnings.push(
                    "STANDARD_WEBHOOK_SECRET is not set: every POST will be refused with 401"
                        .into(),
                );
            }
            Manifest {
                name: "standard-webhooks".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                routes: vec![Route {
                    method: "POST".into(),
                    path: "webhook".into(),
                    kind: RouteKind::Webhook,
                    auth: portico_sdk::RouteAuth::None,
                }],
                outbox: vec![],
                warnings,
            }
        }

        fn verify(req: Request) -> Verdict {
            let header = |name: &str| http::header(&req, name).map(str::to_string);
            match logic::verify(
                &header,
                &req.body,
                &host::secret_list("signing_secret"),
                now(),
            ) {
                Ok(()) => Verdict::Accept,
                Err(e) => Verdict::Reject(e.to_string()),
            }
        }

        fn parse(req: Request) -> Result<Vec<Item>, AdapterError> {
            let id = http::header(&req, "webhook-id").unwrap_or_default();
            let item = logic::parse(&req.body, id)?;
            Ok(vec![item.into_item(logic::TENANT_KIND)])
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            if item.kind == "ignored" {
                return Ok(vec![DomainOp::Ignore(
                    String::from_utf8_lossy(&item.payload).into_owned(),
                )]);
            }
            let lead = logic::map_lead(&item.payload)?;
            Ok(vec![DomainOp::CreateLead(Lead {
                source: logic::LEAD_SOURCE.into(),
                external_id: lead.external_id,
                form_id: None,
                ad_id: None,
                campaign_id: None,
                full_name: lead.full_name,
                email: lead.email,
                phone: lead.phone,
                fields_json: lead.fields_json,
            })])
        }

        fn handle(_req: Request) -> Option<Response> {
            None
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

    portico_sdk::export_adapter!(StandardWebhooks);
}
