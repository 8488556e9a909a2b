//! Google Ads offline click conversions: a thin component wrapper over
//! [`logic`] (intake), [`data_manager`] and [`ads_api`] (the two ways up).
//!
//! Route: POST offline-conversion (intake: bad input is a 400 naming each field).
//! Outbox: `conversion` records, uploaded in batches by the outbox worker,
//! one request per customer (Google deduplicates them by transaction or
//! order id, so a cut-off attempt may be sent again).
//! Config: `upload_enabled` (GOOGLE_ADS_OFFLINE_ENABLED), `upload_api`
//! (`data-manager` or `ads-api`), `data_manager_base_url`, `api_base_url`,
//! `api_version`, `customer_id`, `login_customer_id`, `conversion_action`,
//! `event_source`, `ad_user_data_consent`, `ad_personalization_consent`,
//! `token_url`, `client_id`. Secrets: `refresh_token`, `client_secret`,
//! `access_token`, `developer_token`. A tenant's `google` source (its key is
//! the customer id) may carry its own of each.

pub mod ads_api;
pub mod data_manager;
pub mod logic;

#[cfg(target_arch = "wasm32")]
mod component {
    use crate::ads_api;
    use crate::data_manager::{self, IngestEnd, Planned, RowOutcomeHint, Target};
    use crate::logic::{self, BatchEnd, Conversion, IntakeConfig, RowEnd, TENANT_KIND};
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::oauth::{self, RefreshGrant, TokenError};
    use portico_sdk::{
        AdapterError, BatchError, DomainOp, Item, Manifest, OutboxDecl, OutboxRow, RecordRef,
        Request, Response, Route, RouteKind, RowOutcome, Verdict, cache, directory, host, http,
        outbound,
    };

    struct GoogleAds;

    const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
    const DATA_MANAGER: &str = "https://datamanager.googleapis.com";

    /// Where uploads go.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum UploadApi {
        DataManager,
        AdsApi,
    }

    fn upload_api() -> Result<UploadApi, String> {
        match host::config("upload_api")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "data-manager" => Ok(UploadApi::DataManager),
            "ads-api" => Ok(UploadApi::AdsApi),
            other => Err(format!(
                "GOOGLE_ADS_UPLOAD_API = {other:?} is neither data-manager nor ads-api"
            )),
        }
    }

    fn customer_id() -> Option<String> {
        host::config("customer_id")
            .map(|c| logic::clean_customer_id(&c))
            .filter(|c| !c.is_empty())
    }

    impl Guest for GoogleAds {
        fn manifest() -> Manifest {
            let mut warnings = Vec::new();
            if host::config_bool("upload_enabled", false) {
                if let Err(why) = upload_api() {
                    warnings.push(format!("{why}: uploads stop until it is fixed"));
                }
                if customer_id().is_none() {
                    warnings.push("uploads are on but GOOGLE_ADS_CUSTOMER_ID is not set: only conversions of tenants with a google source (its key is their customer id) upload".into());
                }
                let refresh = host::secret("refresh_token").is_some();
                if !refresh && host::secret("access_token").is_none() {
                    warnings.push("uploads are on but neither GOOGLE_ADS_REFRESH_TOKEN (with GOOGLE_ADS_CLIENT_ID and GOOGLE_ADS_CLIENT_SECRET) nor GOOGLE_ADS_ACCESS_TOKEN is set: only sources with their own credentials upload".into());
                }
                if refresh
                    && (host::config("client_id").is_none()
                        || host::secret("client_secret").is_none())
                {
                    warnings.push("GOOGLE_ADS_REFRESH_TOKEN is set without GOOGLE_ADS_CLIENT_ID and GOOGLE_ADS_CLIENT_SECRET: no access token can be minted".into());
                }
                if upload_api() == Ok(UploadApi::AdsApi)
                    && let Some(version) =
                        host::config("api_version").filter(|v| !v.trim().is_empty())
                {
                    let number: u32 = version.trim().trim_start_matches('v').parse().unwrap_or(0);
                    if number < 23 {
                        warnings.push(format!("GOOGLE_ADS_API_VERSION = {version:?}: versions before 23 are sunset (v22 on 2026-10-07); use {}", ads_api::LATEST_VERSION));
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
            // The tenant the request names, else the only tenant with a
            // Google account; its `google` source's key is its customer id.
            let named = logic::tenant_of(&req.body);
            // (implied tenant, the source's key as it was added, if any)
            let (implied, source) = match named {
                Some(t) => (None, directory::source_key(t, TENANT_KIND)),
                None => match directory::sources(TENANT_KIND, 2).as_slice() {
                    [] => (None, None),
                    [only] => (Some(only.tenant_id), Some(only.key.clone())),
                    // Uploads off: recorded (as logged) without a tenant, as ever.
                    _ if !host::config_bool("upload_enabled", false) => (None, None),
                    _ => {
                        return Err(AdapterError::invalid(
                            "invalid_request",
                            vec![("tenant_id".into(), "is required: more than one tenant has a Google Ads account (a google source), so name the tenant this conversion belongs to".into())],
                        ));
                    }
                },
            };
            let customer = source
                .as_deref()
                .map(logic::clean_customer_id)
                .filter(|c| !c.is_empty())
                .or_else(customer_id);
            // The customer's source may name its own conversion action.
            let default_action = match &source {
                Some(key) => directory::setting_for(TENANT_KIND, key, "conversion_action"),
                None => host::config("conversion_action"),
            };
            let config = IntakeConfig {
                customer_id: customer,
                default_action,
                upload_enabled: host::config_bool("upload_enabled", false),
                tenant_account: source.is_some(),
            };
            let mut conversion =
                logic::validate(&req.body, http::header(&req, "idempotency-key"), &config)?;
            if conversion.tenant_id.is_none() {
                conversion.tenant_id = implied;
            }
            let payload = serde_json::to_vec(&conversion)
                .map_err(|e| AdapterError::permanent("internal", e.to_string()))?;
            Ok(vec![Item::new(
                conversion.idempotency_key.clone(),
                TENANT_KIND,
                source.or(config.customer_id),
                "conversion",
                payload,
            )])
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            let c: Conversion = serde_json::from_slice(&item.payload).map_err(|e| {
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
            Ok(vec![DomainOp::QueueConversion(portico_sdk::Conversion {
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
            let api = upload_api().map_err(BatchError::Stop)?;
            // Rows that cannot be uploaded end alone; the rest go by customer.
            let read: Vec<logic::RowRead> =
                rows.iter().map(|r| logic::read_row(&r.payload)).collect();
            let good: Vec<Conversion> = read.iter().flatten().cloned().collect();
            if good.is_empty() {
                return Ok(logic::row_outcomes(read, Vec::new()));
            }
            // One request per customer: a batch never mixes accounts, and
            // each goes out with its customer's own credentials.
            let groups = logic::by_customer(&good, customer_id().as_deref());
            let mut ends: Vec<Option<RowEnd>> = vec![None; good.len()];
            // First every customer's credentials, before anything is sent: a
            // host-wide credential that fails stops the uploader (shown in
            // health) with nothing half done; a tenant's own fails its rows alone.
            let mut ready = Vec::new();
            for (cid, idxs) in &groups {
                let Some(cid) = cid else {
                    return Err(BatchError::Stop(
                        "GOOGLE_ADS_CUSTOMER_ID is not set and the conversion's action names no customer".into(),
                    ));
                };
                let account = Account::of(cid, &good, idxs);
                match auth_for(&account).and_then(|auth| token(&auth, false).map(|_| auth)) {
                    Ok(auth) => ready.push((account, auth, idxs)),
                    Err(BatchError::Stop(why)) if account.own_credentials() => {
                        host::error(&why);
                        for i in idxs.iter() {
                            ends[*i] = Some(RowEnd::Retry(why.clone()));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut sent_any = false;
            for (account, auth, idxs) in ready {
                let result = match api {
                    UploadApi::DataManager => upload_data_manager(&account, &auth, &good, idxs),
                    UploadApi::AdsApi => upload_ads_api(&account, &auth, &good, idxs),
                };
                match result {
                    Ok(group_ends) => {
                        sent_any = true;
                        for (i, end) in group_ends {
                            ends[i] = Some(end);
                        }
                    }
                    // A tenant's own credentials or account refused: its rows alone wait.
                    Err(BatchError::Stop(why)) if account.own_credentials() => {
                        host::error(&why);
                        for i in idxs {
                            ends[*i] = Some(RowEnd::Retry(why.clone()));
                        }
                    }
                    // Nothing went out yet: the whole batch waits for the fix.
                    Err(e @ BatchError::Stop(_)) if !sent_any => return Err(e),
                    Err(e @ BatchError::Retry(_)) if !sent_any && groups.len() == 1 => {
                        return Err(e);
                    }
                    // Others went out: theirs are kept, this customer's rows wait.
                    Err(BatchError::Retry((why, _)) | BatchError::Stop(why)) => {
                        for i in idxs {
                            ends[*i] = Some(RowEnd::Retry(why.clone()));
                        }
                    }
                }
            }
            let ends = ends
                .into_iter()
                .map(|e| e.unwrap_or_else(|| RowEnd::Retry("no answer for this row".into())))
                .collect();
            Ok(logic::row_outcomes(read, ends))
        }

        fn respond(_req: Request, records: Vec<RecordRef>) -> Response {
            portico_sdk::respond_records(&records)
        }
    }

    /// A customer, and the key its `google` source was added under (which
    /// may be written with dashes): its credentials and settings are read by that.
    struct Account {
        customer_id: String,
        source_key: String,
    }

    impl Account {
        fn of(cid: &str, rows: &[Conversion], idxs: &[usize]) -> Account {
            let source_key = idxs
                .iter()
                .filter_map(|i| rows[*i].tenant_id)
                .find_map(|t| directory::source_key(t, TENANT_KIND))
                .filter(|key| logic::clean_customer_id(key) == cid)
                .unwrap_or_else(|| cid.to_string());
            Account {
                customer_id: cid.to_string(),
                source_key,
            }
        }

        fn secret(&self, name: &str) -> Option<String> {
            directory::secret_for(TENANT_KIND, &self.source_key, name)
        }

        /// The source's own secret, never the host's.
        fn own_secret(&self, name: &str) -> Option<String> {
            directory::source_secret(TENANT_KIND, &self.source_key, name)
        }

        /// Whether its calls use its source's own credentials.
        fn own_credentials(&self) -> bool {
            self.own_secret("refresh_token").is_some() || self.own_secret("access_token").is_some()
        }

        fn setting(&self, name: &str) -> Option<String> {
            directory::setting_for(TENANT_KIND, &self.source_key, name)
        }
    }

    /// How a customer's calls are authorized.
    enum Auth {
        /// A token someone else renews (GOOGLE_ADS_ACCESS_TOKEN).
        Fixed(String),
        /// Minted from a refresh token, kept until shortly before it expires;
        /// `whose` names where the refresh token came from, for the operator.
        Refresh { grant: RefreshGrant, whose: String },
    }

    /// The customer's own credentials (its source's secrets, a refresh token
    /// before an access token), else the host's.
    fn auth_for(account: &Account) -> Result<Auth, BatchError> {
        let cid = &account.customer_id;
        let grant = |refresh_token: String, whose: &str| {
            let client_id = account.setting("client_id");
            let client_secret = account.secret("client_secret");
            let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
                return Err(BatchError::Stop(format!(
                    "customer {cid}: {whose} refresh token is set but GOOGLE_ADS_CLIENT_ID or GOOGLE_ADS_CLIENT_SECRET is not: set both (the OAuth client the refresh token was made with)"
                )));
            };
            Ok(Auth::Refresh {
                grant: RefreshGrant {
                    token_url: host::config("token_url").unwrap_or_else(|| TOKEN_URL.into()),
                    client_id,
                    client_secret,
                    refresh_token,
                },
                whose: whose.to_string(),
            })
        };
        if let Some(refresh) = account.own_secret("refresh_token") {
            return grant(
                refresh,
                &format!("the google source {}'s", account.source_key),
            );
        }
        if let Some(token) = account.own_secret("access_token") {
            return Ok(Auth::Fixed(token));
        }
        if let Some(refresh) = host::secret("refresh_token") {
            return grant(refresh, "GOOGLE_ADS_REFRESH_TOKEN's");
        }
        host::secret("access_token")
            .map(Auth::Fixed)
            .ok_or_else(|| BatchError::Stop(format!("no Google credentials for customer {cid}: set GOOGLE_ADS_REFRESH_TOKEN with GOOGLE_ADS_CLIENT_ID and GOOGLE_ADS_CLIENT_SECRET (or the source's own refresh_token), or GOOGLE_ADS_ACCESS_TOKEN")))
    }

    fn token(auth: &Auth, renew: bool) -> Result<String, BatchError> {
        match auth {
            Auth::Fixed(t) => Ok(t.clone()),
            Auth::Refresh { grant, whose } => oauth::access_token(grant, renew).map_err(|e| match e {
                TokenError::Unavailable(_) => BatchError::Retry((e.describe(), None)),
                TokenError::Refused { .. } => BatchError::Stop(format!(
                    "{} ({whose}): make a new refresh token and set it there (GOOGLE_ADS_REFRESH_TOKEN and reload the plugin, or `portico source set --kind google --key KEY --secret refresh_token=...`)",
                    e.describe()
                )),
                TokenError::NotAllowed(_) => BatchError::Stop(e.describe()),
            }),
        }
    }

    /// Send with a bearer token; after a 401, once more with a new token
    /// (the kept one may have been revoked or expired early).
    fn send_authorized(
        auth: &Auth,
        build: impl Fn(&str) -> outbound::OutboundRequest,
    ) -> Result<outbound::OutboundResponse, BatchError> {
        let send = |token: &str| match outbound::send(&build(token)) {
            Ok(a) => Ok(a),
            Err(outbound::OutboundError::NotAllowed(why)) => Err(BatchError::Stop(why)),
            Err(e) => Err(BatchError::Retry((outbound::describe(&e), None))),
        };
        let answer = send(&token(auth, false)?)?;
        if answer.status == 401 && matches!(auth, Auth::Refresh { .. }) {
            host::info("Google answered 401 to the kept access token: minting a new one");
            return send(&token(auth, true)?);
        }
        Ok(answer)
    }

    fn header<'a>(answer: &'a outbound::OutboundResponse, name: &str) -> Option<&'a str> {
        answer
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// One uploadClickConversions call for a customer's rows.
    fn upload_ads_api(
        account: &Account,
        auth: &Auth,
        rows: &[Conversion],
        idxs: &[usize],
    ) -> Result<Vec<(usize, RowEnd)>, BatchError> {
        let cid = &account.customer_id;
        let batch: Vec<Conversion> = idxs.iter().map(|i| rows[*i].clone()).collect();
        let base = host::config("api_base_url")
            .unwrap_or_else(|| "https://googleads.googleapis.com".into());
        let version = host::config("api_version")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| ads_api::LATEST_VERSION.into());
        let url = outbound::api_url(
            &base,
            &version,
            &format!("customers/{cid}:uploadClickConversions"),
        );
        // Optional since developer tokens were retired (2026-09-09): sent only when set.
        let developer = account.secret("developer_token");
        let login = account
            .setting("login_customer_id")
            .map(|c| logic::clean_customer_id(&c))
            .filter(|c| !c.is_empty());
        let body = ads_api::upload_request(&batch).to_string().into_bytes();
        let answer = send_authorized(auth, |token| {
            let mut headers = vec![
                ("authorization".to_string(), format!("Bearer {token}")),
                ("content-type".to_string(), "application/json".to_string()),
            ];
            if let Some(d) = &developer {
                headers.push(("developer-token".to_string(), d.clone()));
            }
            if let Some(l) = &login {
                headers.push(("login-customer-id".to_string(), l.clone()));
            }
            outbound::OutboundRequest {
                method: "POST".into(),
                url: url.clone(),
                headers,
                body: body.clone(),
                timeout_ms: Some(20_000),
            }
        })?;
        match ads_api::read_upload_answer(
            answer.status,
            header(&answer, "retry-after"),
            &answer.body,
            batch.len(),
        ) {
            BatchEnd::Rows(ends) => Ok(idxs.iter().copied().zip(ends).collect()),
            BatchEnd::Retry(message, after) => Err(BatchError::Retry((message, after))),
            BatchEnd::Stop(message) => Err(BatchError::Stop(message)),
        }
    }

    /// A customer's request-wide Data Manager settings (its source's, else the host's).
    fn target_for(account: &Account) -> Result<Target, BatchError> {
        let setting = |name: &str| account.setting(name);
        let event_source = setting("event_source")
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "WEB".into());
        if !data_manager::EVENT_SOURCES.contains(&event_source.as_str()) {
            return Err(BatchError::Stop(format!(
                "GOOGLE_ADS_EVENT_SOURCE (or the source's event_source) = {event_source:?} is not one of {}",
                data_manager::EVENT_SOURCES.join(", ")
            )));
        }
        let consent = |name: &str, env: &str| {
            data_manager::consent_status(setting(name).as_deref())
                .map_err(|why| BatchError::Stop(format!("{env} (or the source's {name}): {why}")))
        };
        Ok(Target {
            customer_id: account.customer_id.clone(),
            login_customer_id: setting("login_customer_id")
                .map(|c| logic::clean_customer_id(&c))
                .filter(|c| !c.is_empty()),
            event_source,
            ad_user_data: consent("ad_user_data_consent", "GOOGLE_ADS_AD_USER_DATA_CONSENT")?,
            ad_personalization: consent(
                "ad_personalization_consent",
                "GOOGLE_ADS_AD_PERSONALIZATION_CONSENT",
            )?,
        })
    }

    fn data_manager_url(path: &str) -> String {
        let base = host::config("data_manager_base_url").unwrap_or_else(|| DATA_MANAGER.into());
        outbound::api_url(&base, "1", path)
    }

    /// The cache entry naming the request a row went out in, and its destination.
    fn sent_key(row: &Conversion) -> Option<String> {
        row.row_id.map(|id| format!("dm-sent:{id}"))
    }

    /// Data Manager uploads for one customer's rows: rows already sent wait
    /// on their request's status; the others go in as few requests as fit.
    fn upload_data_manager(
        account: &Account,
        auth: &Auth,
        rows: &[Conversion],
        idxs: &[usize],
    ) -> Result<Vec<(usize, RowEnd)>, BatchError> {
        let target = target_for(account)?;
        let mut ends = Vec::new();
        // Rows sent earlier by this process: read their request's status, never send again.
        let mut waiting: Vec<(String, Vec<Member>)> = Vec::new();
        let mut fresh = Vec::new();
        for &i in idxs {
            let sent = sent_key(&rows[i])
                .and_then(|k| cache::get(&k))
                .and_then(|v| {
                    let mut parts = v.split(' ');
                    let (request_id, reference, at) = (parts.next()?, parts.next()?, parts.next()?);
                    Some((
                        request_id.to_string(),
                        reference.to_string(),
                        at.parse::<usize>().ok()?,
                    ))
                });
            match sent {
                Some((request_id, reference, at)) => {
                    match waiting.iter_mut().find(|(r, _)| *r == request_id) {
                        Some((_, list)) => list.push((i, reference, at)),
                        None => waiting.push((request_id, vec![(i, reference, at)])),
                    }
                }
                None => fresh.push(i),
            }
        }
        for (request_id, members) in waiting {
            ends.extend(status_ends(auth, rows, &request_id, &members)?);
        }
        let (plans, refused) = data_manager::plan(rows, &fresh);
        ends.extend(refused);
        for plan in plans {
            // An error drops this call's ends: the rows go back untouched, and
            // what was sent is remembered, so nothing is sent twice for it.
            ends.extend(ingest(auth, &target, rows, plan)?);
        }
        Ok(ends)
    }

    /// A row sent in a request: (row index, destination reference, the
    /// destination's place in the request).
    type Member = (usize, String, usize);

    /// Send one planned request; events Google names as bad end alone and
    /// the rest go again at once (a refused request was not processed at all).
    fn ingest(
        auth: &Auth,
        target: &Target,
        rows: &[Conversion],
        mut plan: Planned,
    ) -> Result<Vec<(usize, RowEnd)>, BatchError> {
        let mut ends = Vec::new();
        let url = data_manager_url("events:ingest");
        for _round in 0..3 {
            if plan.events.is_empty() {
                return Ok(ends);
            }
            let body = data_manager::ingest_request(target, &plan, rows)
                .to_string()
                .into_bytes();
            let answer = send_authorized(auth, |token| outbound::OutboundRequest {
                method: "POST".into(),
                url: url.clone(),
                headers: vec![
                    ("authorization".into(), format!("Bearer {token}")),
                    ("content-type".into(), "application/json".into()),
                ],
                body: body.clone(),
                timeout_ms: Some(20_000),
            })?;
            match data_manager::read_ingest_answer(
                answer.status,
                header(&answer, "retry-after"),
                &answer.body,
            ) {
                IngestEnd::Accepted {
                    request_id,
                    warnings,
                } => {
                    for w in warnings {
                        host::warn(&format!("Data Manager request {request_id}: {w}"));
                    }
                    if request_id.is_empty() {
                        // Nothing to read a status by: taken is all Google said.
                        ends.extend(plan.events.iter().map(|(i, _)| (*i, RowEnd::Uploaded)));
                        return Ok(ends);
                    }
                    let members: Vec<Member> = plan
                        .events
                        .iter()
                        .map(|(i, reference)| {
                            let at = plan
                                .destinations
                                .iter()
                                .position(|(r, _)| r == reference)
                                .unwrap_or(0);
                            (*i, reference.clone(), at)
                        })
                        .collect();
                    for (i, reference, at) in &members {
                        if let Some(k) = sent_key(&rows[*i]) {
                            cache::put(
                                &k,
                                &format!("{request_id} {reference} {at}"),
                                std::time::Duration::from_secs(24 * 3600),
                            );
                        }
                    }
                    ends.extend(status_ends(auth, rows, &request_id, &members)?);
                    return Ok(ends);
                }
                IngestEnd::Refused {
                    reason,
                    message,
                    events,
                    destinations,
                } => {
                    if events.is_empty() && destinations.is_empty() {
                        ends.extend(
                            plan.events.iter().map(|(i, _)| {
                                (*i, RowEnd::Rejected(reason.clone(), message.clone()))
                            }),
                        );
                        return Ok(ends);
                    }
                    // Only what Google named ends; the rest goes again.
                    let bad_refs: Vec<(String, String)> = destinations
                        .iter()
                        .filter_map(|(d, said)| {
                            plan.destinations
                                .get(*d)
                                .map(|(r, _)| (r.clone(), said.clone()))
                        })
                        .collect();
                    let mut kept = Vec::new();
                    for (at, (i, reference)) in plan.events.iter().enumerate() {
                        let said = events
                            .iter()
                            .find(|(e, _)| *e == at)
                            .map(|(_, s)| s.clone())
                            .or_else(|| {
                                bad_refs
                                    .iter()
                                    .find(|(r, _)| r == reference)
                                    .map(|(_, s)| s.clone())
                            });
                        match said {
                            Some(said) => ends.push((
                                *i,
                                RowEnd::Rejected(reason.clone(), format!("{message} ({said})")),
                            )),
                            None => kept.push((*i, reference.clone())),
                        }
                    }
                    if kept.len() == plan.events.len() {
                        // Google named nothing we sent: nothing to leave out.
                        ends.extend(
                            kept.into_iter().map(|(i, _)| {
                                (i, RowEnd::Rejected(reason.clone(), message.clone()))
                            }),
                        );
                        return Ok(ends);
                    }
                    plan.events = kept;
                    // A destination left without events is not sent again.
                    let used: Vec<String> = plan.events.iter().map(|(_, r)| r.clone()).collect();
                    plan.destinations.retain(|(r, _)| used.contains(r));
                }
                IngestEnd::Retry(message, after) => {
                    return Err(BatchError::Retry((message, after)));
                }
                IngestEnd::Unauthorized(message) => {
                    return Err(BatchError::Stop(format!(
                        "{message}; fix the credentials (GOOGLE_ADS_REFRESH_TOKEN with GOOGLE_ADS_CLIENT_ID and GOOGLE_ADS_CLIENT_SECRET, or GOOGLE_ADS_ACCESS_TOKEN) and reload the plugin"
                    )));
                }
                IngestEnd::Stop(message) => return Err(BatchError::Stop(message)),
            }
        }
        ends.extend(plan.events.iter().map(|(i, _)| {
            (
                *i,
                RowEnd::Retry("Google refused the request three times over".into()),
            )
        }));
        Ok(ends)
    }

    /// Read a request's status and end the rows sent in it.
    fn status_ends(
        auth: &Auth,
        rows: &[Conversion],
        request_id: &str,
        members: &[Member],
    ) -> Result<Vec<(usize, RowEnd)>, BatchError> {
        let url = format!(
            "{}?requestId={}",
            data_manager_url("requestStatus:retrieve"),
            portico_sdk::http::percent_encode(request_id)
        );
        let forget = |i: usize| {
            if let Some(k) = sent_key(&rows[i]) {
                cache::remove(&k);
            }
        };
        let wait = |why: String, secs: u32| -> Vec<(usize, RowEnd)> {
            members
                .iter()
                .map(|(i, _, _)| (*i, RowEnd::Wait(why.clone(), secs)))
                .collect()
        };
        let answer = send_authorized(auth, |token| outbound::OutboundRequest {
            method: "GET".into(),
            url: url.clone(),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            body: Vec::new(),
            timeout_ms: Some(10_000),
        });
        let answer = match answer {
            Ok(a) => a,
            // Credentials refused: the uploader stops (the request is remembered).
            Err(e @ BatchError::Stop(_)) => return Err(e),
            // The request went in; only its status is unknown for now.
            Err(BatchError::Retry((why, _))) => {
                return Ok(wait(
                    format!(
                        "Google took request {request_id}; its status could not be read ({why})"
                    ),
                    data_manager::PROCESSING_WAIT_SECS,
                ));
            }
        };
        if !(200..300).contains(&answer.status) {
            // Google may not know a request this fresh yet: ask again later
            // (once the remembered request expires, the rows go again, and
            // their transaction ids keep Google from counting any twice).
            return Ok(wait(
                format!(
                    "Google took request {request_id}; reading its status answered HTTP {}",
                    answer.status
                ),
                data_manager::PROCESSING_WAIT_SECS,
            ));
        }
        let mut destinations: Vec<(String, usize)> = Vec::new();
        for (_, r, at) in members {
            if !destinations.iter().any(|(d, _)| d == r) {
                destinations.push((r.clone(), *at));
            }
        }
        let statuses = data_manager::read_status(&answer.body, &destinations);
        let mut ends = Vec::new();
        for ((reference, _), status) in destinations.iter().zip(statuses) {
            let group: Vec<usize> = members
                .iter()
                .filter(|(_, r, _)| r == reference)
                .map(|(i, _, _)| *i)
                .collect();
            let end = match data_manager::rows_end(&status, group.len(), request_id) {
                RowOutcomeHint::Wait(secs) => {
                    RowEnd::Wait(format!("Google is processing request {request_id}"), secs)
                }
                RowOutcomeHint::End(end) => {
                    group.iter().for_each(|i| forget(*i));
                    end
                }
                RowOutcomeHint::SendAgain(why, secs) => {
                    group.iter().for_each(|i| forget(*i));
                    RowEnd::Wait(why, secs)
                }
                RowOutcomeHint::Partly(why) => {
                    host::warn(&why);
                    group.iter().for_each(|i| forget(*i));
                    RowEnd::Uploaded
                }
            };
            ends.extend(group.into_iter().map(|i| (i, end.clone())));
        }
        Ok(ends)
    }

    portico_sdk::export_adapter!(GoogleAds);
}
