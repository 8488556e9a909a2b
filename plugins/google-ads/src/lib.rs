//! Google Ads offline click conversions: a thin component wrapper over [`logic`].
//!
//! Route: POST offline-conversion (intake: bad input is a 400 naming each field).
//! Outbox: `conversion` records, uploaded in batches of at most 2000.
//! Config: `upload_enabled` (GOOGLE_ADS_OFFLINE_ENABLED), `api_base_url`,
//! `api_version`, `customer_id`, `login_customer_id`, `conversion_action`.
//! Secrets: `developer_token`, `access_token`.

pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::logic::{self, BatchEnd, IntakeConfig, RowEnd};
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::{
        AdapterError, BatchError, Conversion, DomainOp, Item, Manifest, OutboxDecl, OutboxRow,
        Request, Response, Route, RouteKind, RowOutcome, TenantRef, Verdict, host, http, outbound,
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
                outbox: vec![OutboxDecl {
                    kind: "conversion".into(),
                    max_batch: logic::MAX_BATCH,
                }],
                warnings,
            }
        }

        fn verify(_req: Request) -> Verdict {
            // The caller is the CRM itself, inside the operator's network.
            Verdict::Accept
        }

        fn parse(req: Request) -> Result<Vec<Item>, AdapterError> {
            let config = IntakeConfig {
                customer_id: customer_id(),
                default_action: host::config("conversion_action"),
            };
            let conversion =
                logic::validate(&req.body, http::header(&req, "idempotency-key"), &config)
                    .map_err(|bad| {
                        let mut e = AdapterError::permanent("invalid_request", bad.message());
                        e.fields = bad.0;
                        e
                    })?;
            let payload = serde_json::to_vec(&conversion)
                .map_err(|e| AdapterError::permanent("internal", e.to_string()))?;
            Ok(vec![Item {
                dedup_key: conversion.idempotency_key.clone(),
                tenant: customer_id().map(|key| TenantRef {
                    kind: logic::TENANT_KIND.into(),
                    key,
                }),
                kind: "conversion".into(),
                payload,
            }])
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            let c: logic::Conversion = serde_json::from_slice(&item.payload).map_err(|e| {
                AdapterError::permanent("invalid_item", format!("conversion item payload: {e}"))
            })?;
            let upload = host::config_bool("upload_enabled", false);
            if !upload {
                host::info(&format!(
                    "conversion {} recorded as logged, not uploaded (GOOGLE_ADS_OFFLINE_ENABLED=false)",
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
            let Some(cid) = customer_id() else {
                return Err(BatchError::Stop("GOOGLE_ADS_CUSTOMER_ID is not set".into()));
            };
            let developer = host::secret("developer_token")
                .ok_or_else(|| BatchError::Stop("GOOGLE_ADS_DEVELOPER_TOKEN is not set".into()))?;
            let token = host::secret("access_token")
                .ok_or_else(|| BatchError::Stop("GOOGLE_ADS_ACCESS_TOKEN is not set".into()))?;
            // Rows whose payload cannot be read end alone; the rest go in one request.
            let mut decoded = Vec::with_capacity(rows.len());
            for row in &rows {
                decoded.push(
                    serde_json::from_slice::<serde_json::Value>(&row.payload)
                        .ok()
                        .and_then(|v| {
                            Some(logic::Conversion {
                                click_id_kind: v["click_id_kind"].as_str()?.to_string(),
                                click_id: v["click_id"].as_str()?.to_string(),
                                conversion_time: v["conversion_time"].as_str()?.to_string(),
                                value: v["value"].as_f64().unwrap_or(0.0),
                                currency: v["currency"].as_str().unwrap_or("USD").to_string(),
                                conversion_action: v["conversion_action"].as_str()?.to_string(),
                                order_id: v["order_id"].as_str().map(str::to_string),
                                idempotency_key: String::new(),
                                tenant_id: None,
                            })
                        }),
                );
            }
            let good: Vec<logic::Conversion> = decoded.iter().flatten().cloned().collect();
            let base = host::config("api_base_url")
                .unwrap_or_else(|| "https://googleads.googleapis.com".into());
            let version = host::config("api_version").unwrap_or_else(|| "21".into());
            let url = format!(
                "{}/v{}/customers/{cid}:uploadClickConversions",
                base.trim_end_matches('/'),
                version.trim_start_matches('v')
            );
            let mut headers = vec![
                ("authorization".to_string(), format!("Bearer {token}")),
                ("developer-token".to_string(), developer),
                ("content-type".to_string(), "application/json".to_string()),
            ];
            if let Some(login) = host::config("login_customer_id")
                .map(|c| logic::clean_customer_id(&c))
                .filter(|c| !c.is_empty())
            {
                headers.push(("login-customer-id".to_string(), login));
            }
            let answer = outbound::send(&outbound::OutboundRequest {
                method: "POST".into(),
                url,
                headers,
                body: logic::upload_request(&good).to_string().into_bytes(),
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
            let ends = match logic::read_upload_answer(
                answer.status,
                retry_after,
                &answer.body,
                good.len(),
            ) {
                BatchEnd::Rows(ends) => ends,
                BatchEnd::Retry(message, after) => return Err(BatchError::Retry((message, after))),
                BatchEnd::Stop(message) => return Err(BatchError::Stop(message)),
            };
            let mut ends = ends.into_iter();
            Ok(decoded
                .iter()
                .map(|d| match d {
                    None => RowOutcome::Rejected((
                        "INVALID_ROW".into(),
                        "the stored conversion could not be read".into(),
                    )),
                    Some(_) => match ends.next() {
                        Some(RowEnd::Uploaded) => RowOutcome::Delivered,
                        Some(RowEnd::Rejected(code, message)) => {
                            RowOutcome::Rejected((code, message))
                        }
                        Some(RowEnd::Retry(message)) => RowOutcome::Retry(message),
                        None => RowOutcome::Retry("no answer for this row".into()),
                    },
                })
                .collect())
        }
    }

    portico_sdk::export_adapter!(GoogleAds);
}
