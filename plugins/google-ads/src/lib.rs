//! Google Ads offline click conversions: a thin component wrapper over [`logic`].
//!
//! Route: POST offline-conversion (intake: bad input is a 400 naming each field).
//! Outbox: `conversion` records, uploaded in batches of at most 2000 by the outbox
//! worker (Google deduplicates them, so a cut-off attempt may be sent again).
//! Config: `upload_enabled` (GOOGLE_ADS_OFFLINE_ENABLED), `api_base_url`,
//! `api_version`, `customer_id`, `login_customer_id`, `conversion_action` (needed
//! only for uploads). Secrets: `developer_token`, `access_token`.

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::logic::{self, BatchEnd, IntakeConfig};
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::{
        AdapterError, BatchError, Conversion, DomainOp, Item, Manifest, OutboxDecl, OutboxRow,
        RecordRef, Request, Response, Route, RouteKind, RowOutcome, Verdict, directory, host, http,
        outbound,
    };

    struct GoogleAds;

    fn customer_id() -> Option<String> {
        host::config("customer_id")
            .map(|c| logic::clean_customer_id(&c))
            .filter(|c| !c.is_empty())
    }

    impl Guest for GoogleAds {
        fn manifest() -> Manifest {
            let mut warnings = Vec::new();
            if host::config_bool("upload_enabled", false) {
                for (what, missing) in [
                    ("GOOGLE_ADS_CUSTOMER_ID", customer_id().is_none()),
                    (
                        "GOOGLE_ADS_DEVELOPER_TOKEN",
                        host::secret("developer_token").is_none(),
                    ),
                    (
                        "GOOGLE_ADS_ACCESS_TOKEN",
                        host::secret("access_token").is_none(),
                    ),
                ] {
                    if missing {
                        warnings.push(format!(
                            "uploads are on but {what} is not set: uploads will fail"
                        ));
                    }
                }
            }
            Manifest {
                name: "google-ads".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                routes: vec![Route {
                    method: "POST".into(),
                    path: "offline-conversion".into(),
                    kind: RouteKind::Intake,
                    auth: portico_sdk::RouteAuth::None,
                }],
                // Batches from the worker; Google drops repeats of a conversion itself.
                outbox: vec![OutboxDecl {
                    kind: "conversion".into(),
                    max_batch: logic::MAX_BATCH,
                    immediate: false,
                    idempotent: true,
                }],
                warnings,
            }
        }

        fn verify(_req: Request) -> Verdict {
            // The caller is the CRM itself: the host has checked its bearer
            // token (PORTICO_INTAKE_TOKEN) before this call.
            Verdict::Accept
        }

        fn parse(req: Request) -> Result<Vec<Item>, AdapterError> {
            // The tenant's own Google account (its `google` source's key) when
            // the request names a tenant that has one, else the host-wide one.
            let tenant = logic::tenant_of(&req.body);
            let customer = tenant
                .and_then(|t| directory::source_key(t, logic::TENANT_KIND))
                .map(|c| logic::clean_customer_id(&c))
                .filter(|c| !c.is_empty())
                .or_else(customer_id);
            // The customer's source may name its own conversion action.
            let default_action = match &customer {
                Some(cid) => directory::setting_for(logic::TENANT_KIND, cid, "conversion_action"),
                None => host::config("conversion_action"),
            };
            let config = IntakeConfig {
                customer_id: customer,
                default_action,
                upload_enabled: host::config_bool("upload_enabled", false),
            };
            let conversion =
                logic::validate(&req.body, http::header(&req, "idempotency-key"), &config)?;
            let payload = serde_json::to_vec(&conversion)
                .map_err(|e| AdapterError::permanent("internal", e.to_string()))?;
            Ok(vec![Item::new(
                conversion.idempotency_key.clone(),
                logic::TENANT_KIND,
                config.customer_id,
                "conversion",
                payload,
            )])
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            let c: logic::Conversion = serde_json::from_slice(&item.payload).map_err(|e| {
                AdapterError::permanent("invalid_item", format!("conversion item payload: {e}"))
            })?;
            let enabled = host::config_bool("upload_enabled", false);
            // Accepted without an action while uploads were off: it can only be logged.
            let upload = enabled && c.conversion_action.is_some();
            if !enabled {
                host::info(&format!(
                    "conversion {} recorded as logged, not uploaded (GOOGLE_ADS_OFFLINE_ENABLED=false)",
                    c.idempotency_key
                ));
            } else if !upload {
                host::warn(&format!(
                    "conversion {} has no conversion action: recorded as logged, not uploaded",
                    c.idempotency_key
                ));
            }
            Ok(vec![DomainOp::QueueConversion(Conversion {
                click_id_kind: c.click_id_kind,
                click_id: c.click_id,
                conversion_time: c.conversion_time,
                value: c.value,
                currency: c.currency,
                conversion_action: c.conversion_action,
                order_id: c.order_id,
                idempotency_key: c.idempotency_key,
                tenant_id: c.tenant_id,
                upload,
            })])
        }

        fn handle(_req: Request) -> Option<Response> {
            None
        }

        fn deliver(kind: String, rows: Vec<OutboxRow>) -> Result<Vec<RowOutcome>, BatchError> {
            if kind != "conversion" {
                return portico_sdk::no_outbox(&kind);
            }
            // Rows that cannot be uploaded end alone; the rest go in one request.
            let read: Vec<logic::RowRead> =
                rows.iter().map(|r| logic::read_row(&r.payload)).collect();
            let good: Vec<logic::Conversion> = read.iter().flatten().cloned().collect();
            if good.is_empty() {
                return Ok(logic::row_outcomes(read, Vec::new()));
            }
            // One upload per customer: a batch never mixes accounts, and
            // each goes out with its customer's own credentials.
            let groups = logic::by_customer(&good, customer_id().as_deref());
            if let [(cid, _)] = groups.as_slice() {
                let ends = upload(cid.as_deref(), &good)?;
                return Ok(logic::row_outcomes(read, ends));
            }
            let mut ends: Vec<Option<logic::RowEnd>> = vec![None; good.len()];
            for (cid, idxs) in &groups {
                let batch: Vec<logic::Conversion> = idxs.iter().map(|i| good[*i].clone()).collect();
                // One customer's failure is its rows' alone.
                let group_ends = match upload(cid.as_deref(), &batch) {
                    Ok(e) => e,
                    Err(BatchError::Retry((why, _)) | BatchError::Stop(why)) => {
                        vec![logic::RowEnd::Retry(why); batch.len()]
                    }
                };
                for (i, end) in idxs.iter().zip(group_ends) {
                    ends[*i] = Some(end);
                }
            }
            Ok(logic::row_outcomes(
                read,
                ends.into_iter().flatten().collect(),
            ))
        }

        fn respond(_req: Request, records: Vec<RecordRef>) -> Response {
            portico_sdk::respond_records(&records)
        }
    }

    /// One uploadClickConversions call; the row ends in order, or the batch's error.
    fn upload(
        cid: Option<&str>,
        good: &[logic::Conversion],
    ) -> Result<Vec<logic::RowEnd>, BatchError> {
        let Some(cid) = cid.map(str::to_string) else {
            return Err(BatchError::Stop("GOOGLE_ADS_CUSTOMER_ID is not set".into()));
        };
        let token = directory::secret_for(logic::TENANT_KIND, &cid, "access_token")
            .ok_or_else(|| BatchError::Stop("GOOGLE_ADS_ACCESS_TOKEN is not set".into()))?;
        let base = host::config("api_base_url")
            .unwrap_or_else(|| "https://googleads.googleapis.com".into());
        let version = host::config("api_version").unwrap_or_else(|| "21".into());
        let url = outbound::api_url(
            &base,
            &version,
            &format!("customers/{cid}:uploadClickConversions"),
        );
        let mut headers = vec![
            ("authorization".to_string(), format!("Bearer {token}")),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        // Sent only when set: a proxy in front of the API may add its own.
        if let Some(developer) = directory::secret_for(logic::TENANT_KIND, &cid, "developer_token")
        {
            headers.push(("developer-token".to_string(), developer));
        }
        if let Some(login) = directory::setting_for(logic::TENANT_KIND, &cid, "login_customer_id")
            .map(|c| logic::clean_customer_id(&c))
            .filter(|c| !c.is_empty())
        {
            headers.push(("login-customer-id".to_string(), login));
        }
        let answer = outbound::send(&outbound::OutboundRequest {
            method: "POST".into(),
            url,
            headers,
            body: logic::upload_request(good).to_string().into_bytes(),
            timeout_ms: Some(20_000),
        });
        let answer = match answer {
            Ok(a) => a,
            Err(outbound::OutboundError::NotAllowed(why)) => return Err(BatchError::Stop(why)),
            Err(e) => return Err(BatchError::Retry((outbound::describe(&e), None))),
        };
        let retry_after = answer
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .map(|(_, v)| v.as_str());
        match logic::read_upload_answer(answer.status, retry_after, &answer.body, good.len()) {
            BatchEnd::Rows(ends) => Ok(ends),
            BatchEnd::Retry(message, after) => Err(BatchError::Retry((message, after))),
            BatchEnd::Stop(message) => Err(BatchError::Stop(message)),
        }
    }

    portico_sdk::export_adapter!(GoogleAds);
}
