//! WhatsApp Cloud API adapter: a thin component wrapper over [`logic`].
//!
//! Routes: GET webhook (handshake), POST webhook (messages and statuses),
//! POST send (admin bearer; sends a text through the Cloud API).
//! Config: `api_base_url`, `api_version`. Secrets: `app_secret` (comma-separated
//! for rotation), `verify_token`, `access_token`.

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::logic::{self, Inbound, Status};
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::{
        AdapterError, BatchError, DomainOp, InboundMessage, Item, Manifest, OutboundMessage,
        OutboxRow, Request, Response, Route, RouteAuth, RouteKind, RowOutcome, StatusUpdate,
        Verdict, directory, host, http, outbound, signature,
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
                warnings.push("WHATSAPP_ACCESS_TOKEN is not set: sends will fail".into());
            }
            Manifest {
                name: "whatsapp".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                routes: vec![
                    route("GET", "webhook", RouteKind::Custom, RouteAuth::None),
                    route("POST", "webhook", RouteKind::Webhook, RouteAuth::None),
                    route("POST", "send", RouteKind::Intake, RouteAuth::Admin),
                ],
                outbox: vec![],
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
                let send = logic::validate_send(&req.body).map_err(|problems| {
                    let mut e = AdapterError::permanent(
                        "invalid_request",
                        problems
                            .iter()
                            .map(|(f, p)| format!("{f}: {p}"))
                            .collect::<Vec<_>>()
                            .join("; "),
                    );
                    e.fields = problems;
                    e
                })?;
                // One request is one send: its key is the caller's Idempotency-Key, else unique.
                let key = match http::header(&req, "idempotency-key") {
                    Some(k) => format!("send:key:{k}"),
                    None => {
                        let nanos = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos())
                            .unwrap_or(0);
                        format!(
                            "send:{}",
                            signature::hmac_sha256_hex(nanos.to_string().as_bytes(), &req.body)
                        )
                    }
                };
                return Ok(vec![Item {
                    dedup_key: key,
                    tenant: None,
                    kind: "send".into(),
                    payload: serde_json::to_vec(&send).unwrap_or_default(),
                }]);
            }
            let items = logic::parse_delivery(&req.body)
                .map_err(|e| AdapterError::permanent(e.code, e.message))?;
            Ok(items
                .into_iter()
                .map(|i| {
                    Item::new(
                        i.dedup_key,
                        logic::TENANT_KIND,
                        i.phone_number_id,
                        i.kind,
                        i.payload,
                    )
                })
                .collect())
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            let bad_item =
                |e: serde_json::Error| AdapterError::permanent("invalid_item", e.to_string());
            match item.kind.as_str() {
                "message" => {
                    let m: Inbound = serde_json::from_slice(&item.payload).map_err(bad_item)?;
                    Ok(vec![DomainOp::RecordInbound(InboundMessage {
                        channel: logic::CHANNEL.into(),
                        contact_phone: m.from,
                        contact_name: m.name,
                        external_id: m.wamid,
                        to_addr: m.to,
                        kind: m.kind,
                        body: m.body,
                        media_id: m.media_id,
                        sent_at: m.timestamp,
                        reply_to: m.reply_to,
                    })])
                }
                "status" => {
                    let s: Status = serde_json::from_slice(&item.payload).map_err(bad_item)?;
                    Ok(vec![DomainOp::UpdateStatus(StatusUpdate {
                        channel: logic::CHANNEL.into(),
                        external_id: s.wamid,
                        status: s.status,
                        error: s.error,
                    })])
                }
                "send" => {
                    let send: logic::Send =
                        serde_json::from_slice(&item.payload).map_err(bad_item)?;
                    Ok(vec![DomainOp::RecordOutbound(deliver_text(&send)?)])
                }
                _ => Ok(vec![DomainOp::Ignore(
                    String::from_utf8_lossy(&item.payload).into_owned(),
                )]),
            }
        }

        fn handle(req: Request) -> Option<Response> {
            http::hub_handshake(&req, host::secret("verify_token").as_deref())
        }

        fn deliver(kind: String, _rows: Vec<OutboxRow>) -> Result<Vec<RowOutcome>, BatchError> {
            portico_sdk::no_outbox(&kind)
        }
    }

    /// Send through the Cloud API; the attempt is kept either way (failed with the provider's error).
    fn deliver_text(send: &logic::Send) -> Result<OutboundMessage, AdapterError> {
        let pnid = directory::source_key(send.tenant_id, logic::TENANT_KIND).ok_or_else(|| {
            AdapterError::permanent(
                "no_whatsapp_number",
                format!(
                    "tenant {} has no WhatsApp number: run `portico source add --tenant {} --kind whatsapp --key PHONE_NUMBER_ID`",
                    send.tenant_id, send.tenant_id
                ),
            )
        })?;
        let mut message = OutboundMessage {
            channel: logic::CHANNEL.into(),
            tenant_id: send.tenant_id,
            // The contact is keyed like inbound ones: wa_id digits, no '+' or spaces.
            to_addr: logic::phone_digits(&send.to),
            from_addr: Some(pnid.clone()),
            body: send.body.clone(),
            case_id: send.case_id,
            external_id: None,
            status: "failed".into(),
            error: None,
        };
        let Some(token) = host::secret("access_token") else {
            message.error = Some("WHATSAPP_ACCESS_TOKEN is not set".into());
            return Ok(message);
        };
        let base =
            host::config("api_base_url").unwrap_or_else(|| "https://graph.facebook.com".into());
        let version = host::config("api_version").unwrap_or_else(|| "25.0".into());
        let url = format!(
            "{}/v{}/{pnid}/messages",
            base.trim_end_matches('/'),
            version.trim_start_matches('v')
        );
        let answer = outbound::send(&outbound::OutboundRequest {
            method: "POST".into(),
            url,
            headers: vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/json".into()),
            ],
            body: logic::send_body(send).to_string().into_bytes(),
            timeout_ms: Some(4_000),
        });
        match answer {
            Ok(a) => match logic::read_send_answer(a.status, &a.body) {
                Ok(wamid) => {
                    message.external_id = Some(wamid);
                    message.status = "sent".into();
                }
                Err(why) => message.error = Some(why),
            },
            Err(e) => message.error = Some(outbound::describe(&e)),
        }
        Ok(message)
    }

    portico_sdk::export_adapter!(WhatsApp);
}
