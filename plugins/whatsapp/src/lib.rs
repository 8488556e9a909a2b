//! WhatsApp Cloud API adapter: a thin component wrapper over [`logic`].
//!
//! Routes: GET webhook (handshake), POST webhook (messages, statuses, edits,
//! revokes and changed identities; users by phone or business-scoped user id),
//! POST send (intake: queues a text, to a phone or a business-scoped user id,
//! that `deliver` sends through the Cloud API while the caller waits). Outbox: `message`, one per call, never resent.
//! Config: `api_base_url`, `api_version`. Secrets: `app_secret` (comma-separated
//! for rotation), `verify_token`, `access_token`.

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::logic::{self, Change, Identity, Inbound, Status};
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::{
        AdapterError, BatchError, DomainOp, Item, Manifest, OutboxDecl, OutboxRow, RecordRef,
        Request, Response, Route, RouteAuth, RouteKind, RowOutcome, Verdict, directory, host, http,
        outbound, signature,
    };

    struct WhatsApp;

    fn route(method: &str, path: &str, kind: RouteKind, auth: RouteAuth) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            kind,
            auth,
        }
    }

    impl Guest for WhatsApp {
        fn manifest() -> Manifest {
            let mut warnings = Vec::new();
            if host::secret_list("app_secret").is_empty() {
                warnings.push(
                    "WHATSAPP_APP_SECRET is not set: every webhook POST will be refused with 401"
                        .into(),
                );
            }
            if host::secret("access_token").is_none() {
                warnings.push(
                    "WHATSAPP_ACCESS_TOKEN is not set: sends fail unless the number's source has its own access_token secret"
                        .into(),
                );
            }
            Manifest {
                name: "whatsapp".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                routes: vec![
                    route("GET", "webhook", RouteKind::Custom, RouteAuth::None),
                    route("POST", "webhook", RouteKind::Webhook, RouteAuth::None),
                    // An intake route: the host demands PORTICO_INTAKE_TOKEN (or the admin token).
                    route("POST", "send", RouteKind::Intake, RouteAuth::None),
                ],
                // The caller waits for the wamid; WhatsApp does not deduplicate sends.
                outbox: vec![OutboxDecl {
                    kind: logic::OUTBOX_KIND.into(),
                    max_batch: 1,
                    immediate: true,
                    idempotent: false,
                }],
                warnings,
            }
        }

        fn verify(req: Request) -> Verdict {
            if req.route == "send" {
                // The host checked the admin bearer token already.
                return Verdict::Accept;
            }
            let secrets = host::secret_list("app_secret");
            match signature::verify_hub_sha256(
                http::header(&req, "x-hub-signature-256"),
                &secrets,
                &req.body,
            ) {
                Ok(()) => Verdict::Accept,
                Err(e) => Verdict::Reject(e.to_string()),
            }
        }

        fn parse(req: Request) -> Result<Vec<Item>, AdapterError> {
            if req.route == "send" {
                let send = logic::validate_send(&req.body)
                    .map_err(|problems| AdapterError::invalid("invalid_request", problems))?;
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let unique = signature::hmac_sha256_hex(nanos.to_string().as_bytes(), &req.body);
                let key =
                    logic::send_dedup_key(&send, http::header(&req, "idempotency-key"), &unique);
                let payload = serde_json::to_vec(&send)
                    .map_err(|e| AdapterError::permanent("internal", e.to_string()))?;
                return Ok(vec![Item::new(
                    key,
                    logic::TENANT_KIND,
                    None,
                    "send",
                    payload,
                )]);
            }
            let items = logic::parse_delivery(&req.body)?;
            Ok(portico_sdk::into_items(items, logic::TENANT_KIND))
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            let bad_item =
                |e: serde_json::Error| AdapterError::permanent("invalid_item", e.to_string());
            match item.kind.as_str() {
                "message" => {
                    let m: Inbound = serde_json::from_slice(&item.payload).map_err(bad_item)?;
                    Ok(vec![m.op()])
                }
                "change" => {
                    let c: Change = serde_json::from_slice(&item.payload).map_err(bad_item)?;
                    Ok(vec![c.op()])
                }
                "identity" => {
                    let i: Identity = serde_json::from_slice(&item.payload).map_err(bad_item)?;
                    Ok(i.ops())
                }
                "status" => {
                    let s: Status = serde_json::from_slice(&item.payload).map_err(bad_item)?;
                    Ok(vec![logic::status_op(s)])
                }
                "send" => {
                    let send: logic::Send =
                        serde_json::from_slice(&item.payload).map_err(bad_item)?;
                    let pnid = directory::source_key(send.tenant_id, logic::TENANT_KIND)
                        .ok_or_else(|| {
                            AdapterError::permanent(
                                "no_whatsapp_number",
                                format!(
                                    "tenant {} has no WhatsApp number: run `portico source add --tenant {} --kind whatsapp --key PHONE_NUMBER_ID`",
                                    send.tenant_id, send.tenant_id
                                ),
                            )
                        })?;
                    Ok(vec![logic::send_op(&send, &pnid, item.dedup_key)])
                }
                _ => Ok(vec![DomainOp::Ignore(
                    String::from_utf8_lossy(&item.payload).into_owned(),
                )]),
            }
        }

        fn handle(req: Request) -> Option<Response> {
            http::hub_handshake(&req, host::secret("verify_token").as_deref())
        }

        fn deliver(kind: String, rows: Vec<OutboxRow>) -> Result<Vec<RowOutcome>, BatchError> {
            if kind != logic::OUTBOX_KIND {
                return portico_sdk::no_outbox(&kind);
            }
            let base =
                host::config("api_base_url").unwrap_or_else(|| "https://graph.facebook.com".into());
            let version = host::config("api_version").unwrap_or_else(|| "25.0".into());
            Ok(rows
                .iter()
                .map(|row| deliver_one(row, &base, &version))
                .collect())
        }

        fn respond(req: Request, records: Vec<RecordRef>) -> Response {
            let special = match req.route.as_str() {
                "send" => logic::send_response(&records),
                _ => None,
            };
            special.unwrap_or_else(|| portico_sdk::respond_records(&records))
        }
    }

    /// Send one queued message through the Cloud API.
    fn deliver_one(row: &OutboxRow, base: &str, version: &str) -> RowOutcome {
        let delivery = match logic::read_delivery(&row.payload) {
            Ok(d) => d,
            Err(end) => return end,
        };
        // The number's own token, else the host-wide one.
        let token = directory::secret_for(
            logic::TENANT_KIND,
            &delivery.phone_number_id,
            "access_token",
        );
        let Some(token) = token else {
            return RowOutcome::Rejected((
                "no_access_token".into(),
                "neither the number's source has an access_token secret nor is WHATSAPP_ACCESS_TOKEN set".into(),
            ));
        };
        let path = format!("{}/messages", delivery.phone_number_id);
        let answer = outbound::send(&outbound::OutboundRequest {
            method: "POST".into(),
            url: outbound::api_url(base, version, &path),
            headers: vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/json".into()),
            ],
            body: delivery.request.to_string().into_bytes(),
            timeout_ms: Some(4_000),
        });
        match answer {
            Ok(a) => logic::answer_outcome(a.status, &a.body),
            Err(e) => logic::error_outcome(&e),
        }
    }

    portico_sdk::export_adapter!(WhatsApp);
}
