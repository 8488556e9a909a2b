//! Meta Lead Ads adapter: a thin component wrapper over [`logic`].
//!
//! Config (plugins.toml): `verify_signature` (default true).
//! Secrets: `app_secret` (comma-separated for rotation), `verify_token` (GET handshake).

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::logic::{self, Mapped};
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::{
        AdapterError, DomainOp, Item, Lead, Manifest, Request, Response, Route, RouteKind,
        TenantRef, Verdict, host, http, signature,
    };

    struct MetaAdapter;

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
                version: env!("CARGO_PKG_VERSION").into(),
                routes: vec![
                    Route {
                        method: "POST".into(),
                        path: "webhook".into(),
                        kind: RouteKind::Webhook,
                    },
                    Route {
                        method: "GET".into(),
                        path: "webhook".into(),
                        kind: RouteKind::Custom,
                    },
                ],
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
            let items = logic::parse_delivery(&req.body).map_err(to_error)?;
            Ok(items
                .into_iter()
                .map(|i| Item {
                    dedup_key: i.dedup_key,
                    tenant: i.page_id.map(|key| TenantRef {
                        kind: logic::TENANT_KIND.into(),
                        key,
                    }),
                    kind: i.kind.into(),
                    payload: i.payload,
                })
                .collect())
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            Ok(
                match logic::map_item(&item.kind, &item.payload).map_err(to_error)? {
                    Mapped::Lead(l) => vec![DomainOp::CreateLead(Lead {
                        source: logic::LEAD_SOURCE.into(),
                        external_id: l.external_id,
                        form_id: l.form_id,
                        ad_id: l.ad_id,
                        campaign_id: l.campaign_id,
                        full_name: None,
                        email: None,
                        phone: None,
                        fields_json: l.fields_json,
                    })],
                    Mapped::Ignore(reason) => vec![DomainOp::Ignore(reason)],
                },
            )
        }

        fn handle(req: Request) -> Option<Response> {
            if req.route != "webhook" || req.method != "GET" {
                return None;
            }
            let token = host::secret("verify_token");
            Some(match logic::handshake(&req.query, token.as_deref()) {
                Some(challenge) => Response::text(200, challenge),
                None => Response::text(403, "verification failed: hub.verify_token does not match"),
            })
        }
    }

    fn to_error(e: logic::ParseError) -> AdapterError {
        AdapterError::permanent(e.code, e.message)
    }

    portico_sdk::export_adapter!(MetaAdapter);
}
