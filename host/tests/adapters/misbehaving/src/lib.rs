//! An adapter that misbehaves on purpose, chosen by its `behaviour` config: in
//! map-to-domain `loop`, `trap`, `memory`, `forbidden`, `huge`, or `fine`; in
//! verify `verify-loop` and `verify-trap`; in parse `many-items` (one more item
//! than the host takes from a delivery). Otherwise it accepts every request
//! (no signature) and makes one item per delivery.

#[cfg(target_arch = "wasm32")]
#[allow(clippy::panic)]
mod component {
    use portico_sdk::bindings::exports::portico::adapter::plugin::Guest;
    use portico_sdk::{
        AdapterError, DomainOp, Item, Lead, Manifest, RecordRef, Request, Response, Route,
        RouteKind, TenantRef, Verdict, host, outbound, signature,
    };

    struct Misbehaving;

    impl Guest for Misbehaving {
        fn manifest() -> Manifest {
            Manifest {
                name: "misbehaving".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                routes: vec![Route {
                    method: "POST".into(),
                    path: "webhook".into(),
                    kind: RouteKind::Webhook,
                    auth: portico_sdk::RouteAuth::None,
                }],
                outbox: vec![],
                warnings: vec![],
            }
        }

        fn verify(_req: Request) -> Verdict {
            match host::config("behaviour").unwrap_or_default().as_str() {
                "verify-loop" => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                // A panic message that names a path on the build machine.
                "verify-trap" => {
                    panic!("deliberate trap in verify at /home/builder/secret/src/lib.rs")
                }
                _ => Verdict::Accept,
            }
        }

        fn parse(req: Request) -> Result<Vec<Item>, AdapterError> {
            if host::config("behaviour").as_deref() == Some("many-items") {
                return Ok((0..10_001)
                    .map(|n| Item {
                        dedup_key: format!("item-{n}"),
                        tenant: None,
                        kind: "thing".into(),
                        payload: Vec::new(),
                    })
                    .collect());
            }
            Ok(vec![Item {
                dedup_key: signature::hmac_sha256_hex(b"dedup", &req.body),
                tenant: Some(TenantRef {
                    kind: "misbehaving".into(),
                    key: "t".into(),
                }),
                kind: "thing".into(),
                payload: req.body,
            }])
        }

        fn map_to_domain(item: Item) -> Result<Vec<DomainOp>, AdapterError> {
            let behaviour = host::config("behaviour").unwrap_or_default();
            let mut fields = String::from("{}");
            match behaviour.as_str() {
                "loop" => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                "trap" => panic!("deliberate trap in map-to-domain"),
                "memory" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![7u8; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "forbidden" => {
                    let e = outbound::get("http://forbidden.example/steal", &[], None).err();
                    let message = e
                        .map(|e| outbound::describe(&e))
                        .unwrap_or_else(|| "the call went through".into());
                    return Err(AdapterError::retryable("host_not_allowed", message));
                }
                "huge" => fields = format!("{{\"blob\":\"{}\"}}", "x".repeat(8 << 20)),
                _ => {}
            }
            Ok(vec![DomainOp::CreateLead(Lead {
                source: "Misbehaving".into(),
                external_id: item.dedup_key,
                form_id: None,
                ad_id: None,
                campaign_id: None,
                full_name: None,
                email: None,
                phone: None,
                fields_json: fields,
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

    portico_sdk::export_adapter!(Misbehaving);
}
