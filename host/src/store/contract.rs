//! The store's contract, as a suite generic over the backend: every backend runs
//! the same tests through the same rules (`contract_suite!(name, open)` per
//! backend). They speak only the `Store` API, as the rest of the host does.

use super::backend::Durability;
use super::types::{EventKind, EventStatus, RecordKind};
use super::{
    Applied, FailState, ItemContext, ItemSlot, NewDelivery, OutboxOutcome, Store, StoreError,
    Timestamp,
};
use crate::domain::{
    ContactRef, DomainOp, InboundMessage, NewConversion, NewLead, OutboundMessage, ParsedItem,
    StatusUpdate, TenantRef,
};
use crate::store::types::MessageStatus;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);

fn page(key: &str) -> TenantRef {
    TenantRef {
        kind: "meta".into(),
        key: key.into(),
    }
}

fn item(key: &str, tenant: Option<TenantRef>) -> ParsedItem {
    ParsedItem {
        dedup_key: key.into(),
        tenant,
        kind: "thing".into(),
        payload: key.as_bytes().to_vec(),
    }
}

fn lead(id: &str) -> DomainOp {
    DomainOp::CreateLead(NewLead {
        source: "Meta".into(),
        external_id: id.into(),
        form_id: None,
        ad_id: None,
        campaign_id: None,
        full_name: Some("Ana".into()),
        email: None,
        phone: None,
        fields_json: "{}".into(),
    })
}

fn send(tenant_id: i64, key: &str, case_id: Option<i64>) -> DomainOp {
    DomainOp::SendMessage(OutboundMessage {
        channel: "chat".into(),
        tenant_id,
        to: ContactRef::phone("5511999"),
        from_addr: Some("100".into()),
        body: "hello".into(),
        case_id,
        idempotency_key: key.into(),
        outbox_kind: "message".into(),
        payload: b"{}".to_vec(),
    })
}

fn conversion(key: &str, upload: bool) -> DomainOp {
    DomainOp::QueueConversion(NewConversion {
        click_id_kind: "gclid".into(),
        click_id: "abc".into(),
        conversion_time: "2026-01-01 00:00:00+00:00".into(),
        value: 1.0,
        currency: "USD".into(),
        conversion_action: None,
        order_id: None,
        idempotency_key: key.into(),
        tenant_id: None,
        upload,
    })
}

fn inbound(wamid: &str, name: Option<&str>) -> DomainOp {
    DomainOp::RecordInbound(InboundMessage {
        channel: "chat".into(),
        contact: ContactRef {
            name: name.map(str::to_string),
            ..ContactRef::phone("5511999")
        },
        external_id: wamid.into(),
        to_addr: None,
        kind: "text".into(),
        body: "hi".into(),
        media_id: None,
        sent_at: None,
        reply_to: None,
    })
}

fn status(wamid: &str, s: MessageStatus) -> DomainOp {
    DomainOp::UpdateStatus(StatusUpdate {
        channel: "chat".into(),
        external_id: wamid.into(),
        status: s,
        error: None,
        recipient: None,
    })
}

/// A delivery with these items, split by `owner`; returns the delivery id and slots.
async fn deliver(store: &Store, owner: &str, items: &[ParsedItem]) -> (i64, Vec<ItemSlot>) {
    deliver_leased(store, owner, LEASE, items).await
}

/// The same, with the items leased to `owner` for `lease`.
async fn deliver_leased(
    store: &Store,
    owner: &str,
    lease: Duration,
    items: &[ParsedItem],
) -> (i64, Vec<ItemSlot>) {
    let id = store
        .insert_delivery(&NewDelivery {
            source: "plug",
            correlation_id: "cid",
            payload: b"{}",
            headers_json: "{}".into(),
            lease_owner: owner,
            lease,
        })
        .await
        .unwrap();
    let slots = store
        .split_delivery(id, "plug", "cid", items, owner, lease, Durability::Synced)
        .await
        .unwrap();
    (id, slots)
}

fn slot_id(slot: &ItemSlot) -> i64 {
    match slot {
        ItemSlot::New(id)
        | ItemSlot::Again { id, .. }
        | ItemSlot::Duplicate { id, .. }
        | ItemSlot::InProgress { id } => *id,
    }
}

async fn apply(
    store: &Store,
    event_id: i64,
    tenant: Option<&TenantRef>,
    ops: &[DomainOp],
) -> Result<Applied, StoreError> {
    apply_as(store, "me", event_id, tenant, ops).await
}

/// Apply as `owner`, for the attempt after those recorded now.
async fn apply_as(
    store: &Store,
    owner: &str,
    event_id: i64,
    tenant: Option<&TenantRef>,
    ops: &[DomainOp],
) -> Result<Applied, StoreError> {
    let attempts = store.get_event(event_id).await.unwrap().unwrap().attempts;
    apply_at(store, owner, attempts, event_id, tenant, ops).await
}

/// Apply as `owner`, for the attempt that started after `attempts_before`.
async fn apply_at(
    store: &Store,
    owner: &str,
    attempts_before: i64,
    event_id: i64,
    tenant: Option<&TenantRef>,
    ops: &[DomainOp],
) -> Result<Applied, StoreError> {
    let immediate = vec!["message".to_string()];
    store
        .apply_item(
            &ItemContext {
                event_id,
                source: "plug",
                tenant,
                owner,
                attempts_before,
                lease: LEASE,
                immediate_kinds: &immediate,
            },
            ops,
            Durability::Deferred,
        )
        .await
}

fn processed(a: Applied) -> (u64, Vec<crate::domain::RecordRef>, Vec<i64>) {
    match a {
        Applied::Processed {
            created,
            records,
            deliver_now,
        } => (created, records, deliver_now),
        Applied::Ignored(why) => panic!("ignored: {why}"),
    }
}

pub async fn tenants_and_sources(store: Store) {
    let t = store.create_tenant("Acme").await.unwrap();
    store.add_lead_source(t, "meta", "p1").await.unwrap();
    assert_eq!(
        store.source_key(t, "meta").await.unwrap().as_deref(),
        Some("p1")
    );
    assert!(matches!(
        store.add_lead_source(t, "meta", "p1").await,
        Err(StoreError::DuplicateSource { tenant_id, .. }) if tenant_id == t
    ));
    assert!(matches!(
        store.add_lead_source(9999, "meta", "p2").await,
        Err(StoreError::TenantNotFound(9999))
    ));

    // A source's settings and sealed secrets: written with it, read back, replaced.
    let sealed = super::StoredCredentials {
        settings_json: r#"{"conversion_action":"7"}"#.into(),
        secret_names: r#"["access_token"]"#.into(),
        secrets_sealed: Some(vec![0, 1, 2, 255]),
    };
    let id = store
        .add_lead_source_with(t, "google", "123", Some(sealed.clone()))
        .await
        .unwrap();
    let row = store.source("google", "123").await.unwrap().unwrap();
    assert_eq!((row.id, row.tenant_id), (id, t));
    assert_eq!(row.settings_json, sealed.settings_json);
    assert_eq!(row.secret_names, sealed.secret_names);
    assert_eq!(row.secrets_sealed, sealed.secrets_sealed);
    let plain = store.source("meta", "p1").await.unwrap().unwrap();
    assert_eq!(
        (plain.settings_json.as_str(), plain.secret_names.as_str()),
        ("{}", "[]")
    );
    assert_eq!(plain.secrets_sealed, None);
    let cleared = super::StoredCredentials {
        settings_json: "{}".into(),
        secret_names: "[]".into(),
        secrets_sealed: None,
    };
    // A compare-and-swap: against a stale view, nothing is written.
    assert!(
        !store
            .set_source_credentials(id, cleared.clone(), Some(cleared.clone()))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_source_credentials(id, cleared.clone(), Some(sealed.clone()))
            .await
            .unwrap()
    );
    let now = store.source("google", "123").await.unwrap().unwrap();
    assert_eq!(now.secrets_sealed, None);
    assert!(
        store
            .set_source_credentials(id, sealed.clone(), Some(cleared.clone()))
            .await
            .unwrap(),
        "a NULL sealed value compares equal to NULL"
    );
    assert!(
        !store
            .set_source_credentials(999_999, sealed.clone(), None)
            .await
            .unwrap()
    );
    let all = store.sources(None).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>().len(), 2);
    assert_eq!(store.sources(Some(t + 1000)).await.unwrap().len(), 0);
    assert_eq!(store.sources(Some(t)).await.unwrap().len(), 2);

    // Sources of one kind, oldest first, as many as asked.
    let u = store.create_tenant("Beta").await.unwrap();
    store.add_lead_source(u, "google", "456").await.unwrap();
    assert_eq!(
        store.sources_of_kind("google", 10).await.unwrap(),
        vec![(t, "123".to_string()), (u, "456".to_string())]
    );
    assert_eq!(store.sources_of_kind("google", 1).await.unwrap().len(), 1);
    assert!(store.sources_of_kind("nope", 10).await.unwrap().is_empty());
}

pub async fn leads_are_idempotent_and_need_a_mapped_tenant(store: Store) {
    let (_, slots) = deliver(&store, "me", &[item("l1", Some(page("p1")))]).await;
    let event = slot_id(&slots[0]);
    let err = apply(&store, event, Some(&page("p1")), &[lead("L1")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownTenant { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("portico source add"));

    let t = store.create_tenant("Acme").await.unwrap();
    store.add_lead_source(t, "meta", "p1").await.unwrap();
    let (created, _, _) = processed(
        apply(&store, event, Some(&page("p1")), &[lead("L1")])
            .await
            .unwrap(),
    );
    assert_eq!(created, 1);
    let (created, _, _) = processed(
        apply(&store, event, Some(&page("p1")), &[lead("L1")])
            .await
            .unwrap(),
    );
    assert_eq!(created, 0, "the same lead twice is one lead");
}

pub async fn a_failed_item_delivered_again_is_processed_again(store: Store) {
    let items = [item("k1", Some(page("p1")))];
    let (_, slots) = deliver(&store, "me", &items).await;
    let ItemSlot::New(id) = slots[0] else {
        panic!("{slots:?}")
    };
    store
        .fail_event(
            id,
            "me",
            0,
            FailState::Failed {
                retry_in: Duration::from_secs(30),
            },
            "no tenant",
        )
        .await
        .unwrap();
    let (_, slots) = deliver(&store, "me", &items).await;
    assert_eq!(slots, vec![ItemSlot::Again { id, attempts: 1 }]);

    let t = store.create_tenant("Acme").await.unwrap();
    store.add_lead_source(t, "meta", "p1").await.unwrap();
    processed(
        apply(&store, id, Some(&page("p1")), &[lead("L9")])
            .await
            .unwrap(),
    );
    let (_, slots) = deliver(&store, "me", &items).await;
    assert_eq!(
        slots,
        vec![ItemSlot::Duplicate {
            id,
            status: EventStatus::Processed,
            attempts: 2
        }]
    );
    let event = store.get_event(id).await.unwrap().unwrap();
    assert_eq!(event.status, EventStatus::Processed);
    assert_eq!(event.attempts, 2);

    // Another process's live lease: that process is on it.
    let (_, slots) = deliver(&store, "other", &[item("k2", None)]).await;
    let (_, again) = deliver(&store, "me", &[item("k2", None)]).await;
    assert_eq!(
        again,
        vec![ItemSlot::InProgress {
            id: slot_id(&slots[0])
        }]
    );
}

pub async fn inbound_messages_join_the_open_case_and_statuses_move_forward(store: Store) {
    let t = store.create_tenant("Acme").await.unwrap();
    store.add_lead_source(t, "meta", "p1").await.unwrap();
    let (_, slots) = deliver(&store, "me", &[item("m1", Some(page("p1")))]).await;
    let event = slot_id(&slots[0]);
    let tenant = page("p1");
    let (created, _, _) = processed(
        apply(
            &store,
            event,
            Some(&tenant),
            &[
                inbound("w1", Some("Ana")),
                inbound("w2", None),
                inbound("w1", None),
            ],
        )
        .await
        .unwrap(),
    );
    assert_eq!(created, 2, "one message per provider id");

    // A send files under the same open case, is pending, and is one per key.
    let (created, records, deliver_now) = processed(
        apply(&store, event, None, &[send(t, "s1", None)])
            .await
            .unwrap(),
    );
    assert_eq!(created, 1);
    assert_eq!(records[0].kind, RecordKind::Message);
    assert_eq!(records[0].status, "pending");
    assert_eq!(deliver_now.len(), 1);
    let (created, again, deliver_now_again) = processed(
        apply(&store, event, None, &[send(t, "s1", None)])
            .await
            .unwrap(),
    );
    assert_eq!((created, deliver_now_again.len()), (0, 0));
    assert_eq!(again[0].id, records[0].id);

    let rows = store.start_outbox(&deliver_now, "me", LEASE).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        store
            .start_outbox(&deliver_now, "me", LEASE)
            .await
            .unwrap()
            .is_empty(),
        "an attempt starts once"
    );
    let ends = store
        .end_outbox(&[(
            &rows[0],
            OutboxOutcome::Delivered {
                external_id: Some("wamid.X".into()),
            },
        )])
        .await
        .unwrap();
    assert_eq!(ends[0].status, "sent");
    assert_eq!(ends[0].external_id.as_deref(), Some("wamid.X"));

    let read = apply(
        &store,
        event,
        Some(&tenant),
        &[status("wamid.X", MessageStatus::Read)],
    )
    .await
    .unwrap();
    assert!(matches!(read, Applied::Processed { .. }));
    let late = apply(
        &store,
        event,
        Some(&tenant),
        &[status("wamid.X", MessageStatus::Delivered)],
    )
    .await
    .unwrap();
    assert!(
        matches!(&late, Applied::Ignored(why) if why.contains("never move backwards")),
        "{late:?}"
    );
    let unknown = apply(
        &store,
        event,
        Some(&tenant),
        &[status("wamid.NO", MessageStatus::Read)],
    )
    .await
    .unwrap();
    assert!(
        matches!(&unknown, Applied::Ignored(why) if why.contains("unknown message wamid.NO")),
        "{unknown:?}"
    );

    // Messages are the tenant's own: another tenant's number with the same
    // provider id neither finds this tenant's message nor collides with it.
    let other = store.create_tenant("Other").await.unwrap();
    store.add_lead_source(other, "meta", "p2").await.unwrap();
    let theirs = page("p2");
    let foreign = apply(
        &store,
        event,
        Some(&theirs),
        &[status("wamid.X", MessageStatus::Failed)],
    )
    .await
    .unwrap();
    assert!(
        matches!(&foreign, Applied::Ignored(why) if why.contains("unknown message wamid.X")),
        "{foreign:?}"
    );
    let (created, _, _) = processed(
        apply(&store, event, Some(&theirs), &[inbound("w1", None)])
            .await
            .unwrap(),
    );
    assert_eq!(
        created, 1,
        "the same provider id in another tenant is its own message"
    );
    let nobody = apply(
        &store,
        event,
        None,
        &[status("wamid.X", MessageStatus::Failed)],
    )
    .await
    .unwrap();
    assert!(
        matches!(&nobody, Applied::Ignored(why) if why.contains("named no tenant")),
        "{nobody:?}"
    );
    let unmapped = apply(
        &store,
        event,
        Some(&page("p404")),
        &[status("wamid.X", MessageStatus::Failed)],
    )
    .await
    .unwrap();
    assert!(
        matches!(&unmapped, Applied::Ignored(why) if why.contains("portico source add")),
        "{unmapped:?}"
    );
}

pub async fn a_send_to_a_wrong_tenant_or_case_commits_nothing(store: Store) {
    let a = store.create_tenant("A").await.unwrap();
    let b = store.create_tenant("B").await.unwrap();
    let (_, slots) = deliver(&store, "me", &[item("x", None)]).await;
    let event = slot_id(&slots[0]);
    let (_, records, _) = processed(
        apply(&store, event, None, &[send(a, "a1", None)])
            .await
            .unwrap(),
    );
    let case_of_a = {
        // The case a's send opened is a's: b may not file under it.
        let err = apply(&store, event, None, &[send(b, "b1", Some(9999))])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::CaseNotFound { .. }), "{err}");
        records[0].id
    };
    assert!(case_of_a > 0);
    let err = apply(&store, event, None, &[send(777, "z", None)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TenantNotFound(777)));
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0].pending, 1, "only a's send waits: {backlog:?}");
}

pub async fn the_outbox_leases_and_retries_and_never_repeats_a_cut_off_send(store: Store) {
    let t = store.create_tenant("A").await.unwrap();
    let (_, slots) = deliver(&store, "me", &[item("c", None)]).await;
    let event = slot_id(&slots[0]);
    let (_, records, deliver_now) = processed(
        apply(
            &store,
            event,
            None,
            &[conversion("c1", true), conversion("c2", false)],
        )
        .await
        .unwrap(),
    );
    assert_eq!(records[0].status, "pending");
    assert_eq!(records[1].status, "logged");
    assert!(deliver_now.is_empty(), "conversions wait for the worker");

    let claimed = store
        .claim_outbox("plug", "conversion", "w1", LEASE, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        store
            .claim_outbox("plug", "conversion", "w2", LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "a leased record is not claimed twice"
    );
    let later = store
        .end_outbox(&[(
            &claimed[0],
            OutboxOutcome::Later {
                error: "429".into(),
                at: Timestamp::now(),
            },
        )])
        .await
        .unwrap();
    assert_eq!(later[0].status, "pending");
    // This worker dies mid-call (its lease runs out at once).
    let again = store
        .claim_outbox("plug", "conversion", "w2", Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // An idempotent kind cut off mid-call goes back to pending.
    assert_eq!(
        store
            .recover_cut_off("plug", "conversion", true)
            .await
            .unwrap(),
        1
    );
    let third = store
        .claim_outbox("plug", "conversion", "w3", LEASE, 10)
        .await
        .unwrap();
    assert_eq!(third[0].attempts, 3);
    // The provider took it and is still processing: a wait is not an attempt.
    let waiting = store
        .end_outbox(&[(
            &third[0],
            OutboxOutcome::Waiting {
                note: "processing".into(),
                at: Timestamp::now(),
            },
        )])
        .await
        .unwrap();
    assert_eq!(
        (waiting[0].status.as_str(), waiting[0].error.as_deref()),
        ("pending", Some("processing"))
    );
    let fourth = store
        .claim_outbox("plug", "conversion", "w4", LEASE, 10)
        .await
        .unwrap();
    assert_eq!(fourth[0].attempts, 3, "the wait did not use up an attempt");
    let done = store
        .end_outbox(&[(&fourth[0], OutboxOutcome::Delivered { external_id: None })])
        .await
        .unwrap();
    assert_eq!(done[0].status, "uploaded");

    // A send cut off mid-call is never sent again.
    let (_, _, now_ids) = processed(
        apply(&store, event, None, &[send(t, "s9", None)])
            .await
            .unwrap(),
    );
    // The process dies mid-call (its lease runs out at once).
    let started = store
        .start_outbox(&now_ids, "me", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        store
            .recover_cut_off("plug", "message", false)
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .claim_outbox("plug", "message", "w4", LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let (_, records, _) = processed(
        apply(&store, event, None, &[send(t, "s9", None)])
            .await
            .unwrap(),
    );
    assert_eq!(records[0].status, "failed");
    assert!(
        records[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("may have accepted it"),
        "{records:?}"
    );
}

pub async fn failures_show_in_the_dlq_and_old_events_are_pruned(store: Store) {
    let (delivery, slots) = deliver(&store, "me", &[item("f", None)]).await;
    let id = slot_id(&slots[0]);
    store
        .fail_event(id, "me", 0, FailState::Dead, "bad input")
        .await
        .unwrap();
    let stats = store.dlq_stats().await.unwrap();
    assert_eq!((stats.failed, stats.dead), (0, 1));
    let dead = store
        .list_events(&super::EventFilter {
            statuses: vec![EventStatus::Dead],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error.as_deref(), Some("bad input"));
    assert_eq!(
        store.get_event(delivery).await.unwrap().unwrap().status,
        EventStatus::Processed
    );
    // Nothing is old enough yet.
    assert_eq!(store.prune(8).await.unwrap(), (0, 0));
    // A failed event is claimed only once due.
    store
        .fail_event(
            id,
            "me",
            1,
            FailState::Failed {
                retry_in: Duration::from_secs(3600),
            },
            "later",
        )
        .await
        .unwrap();
    let claimed = store.claim_due("w", LEASE, 10).await.unwrap();
    assert!(!claimed.contains(&id), "{claimed:?}");
}

pub async fn concurrent_writes_share_commits_and_fail_alone(store: Store) {
    let t = store.create_tenant("Acme").await.unwrap();
    store.add_lead_source(t, "meta", "p1").await.unwrap();
    let mut items: Vec<ParsedItem> = (0..40)
        .map(|n| item(&format!("c{n}"), Some(page("p1"))))
        .collect();
    items.push(item("orphan", Some(page("nobody"))));
    let (_, slots) = deliver(&store, "me", &items).await;
    // All at once: the committer runs them in shared transactions; the one
    // that fails takes nothing else with it.
    let mut tasks = Vec::new();
    for (n, slot) in slots.iter().enumerate() {
        let (store, event) = (store.clone(), slot_id(slot));
        let tenant = items[n].tenant.clone();
        tasks.push(tokio::spawn(async move {
            apply(&store, event, tenant.as_ref(), &[lead(&format!("L{n}"))]).await
        }));
    }
    let mut ok = 0;
    let mut failed = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(Applied::Processed { created: 1, .. }) => ok += 1,
            Ok(other) => panic!("{other:?}"),
            Err(e) => failed.push(e),
        }
    }
    assert_eq!(ok, 40);
    assert!(
        matches!(failed.as_slice(), [StoreError::UnknownTenant { .. }]),
        "{failed:?}"
    );
    let processed = store
        .list_events(&super::EventFilter {
            statuses: vec![EventStatus::Processed],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(processed.len(), 41, "40 items and their delivery");
}

/// Items of a delivery whose splitter's lease is already over (a process that died).
async fn orphaned_items(store: &Store, keys: &[String]) -> Vec<i64> {
    let items: Vec<ParsedItem> = keys.iter().map(|k| item(k, Some(page("p1")))).collect();
    let (_, slots) = deliver_leased(store, "gone", Duration::ZERO, &items).await;
    // Leases are compared in milliseconds: let this one be in the past.
    tokio::time::sleep(Duration::from_millis(5)).await;
    slots.iter().map(slot_id).collect()
}

pub async fn an_attempt_whose_lease_was_taken_over_writes_nothing(store: Store) {
    let tenant = store.create_tenant("Acme").await.unwrap();
    store.add_lead_source(tenant, "meta", "p1").await.unwrap();
    let ids = orphaned_items(&store, &["slow".to_string()]).await;
    let id = ids[0];
    // Another process finds the expired lease and takes the item over.
    let claimed = store.claim_due("fast", LEASE, 10).await.unwrap();
    assert_eq!(claimed, vec![id]);
    // The first one comes back late: neither its result nor its failure is written.
    let late = apply_at(&store, "gone", 0, id, Some(&page("p1")), &[lead("L1")]).await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { event_id }) if event_id == id),
        "{late:?}"
    );
    let late = store
        .fail_event(id, "gone", 0, FailState::Dead, "too late")
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    let event = store.get_event(id).await.unwrap().unwrap();
    assert_eq!((event.status, event.attempts), (EventStatus::Received, 0));
    // The holder's attempt is the one that counts.
    let applied = apply_as(&store, "fast", id, Some(&page("p1")), &[lead("L1")])
        .await
        .unwrap();
    assert!(
        matches!(applied, Applied::Processed { created: 1, .. }),
        "{applied:?}"
    );
    let event = store.get_event(id).await.unwrap().unwrap();
    assert_eq!((event.status, event.attempts), (EventStatus::Processed, 1));
    // Later still, the holder done and no lease left: the late attempt's count
    // is behind, so it still writes nothing.
    let late = store
        .fail_event(id, "gone", 0, FailState::Dead, "much too late")
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    let late = apply_at(&store, "gone", 0, id, Some(&page("p1")), &[lead("L2")]).await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    let event = store.get_event(id).await.unwrap().unwrap();
    assert_eq!((event.status, event.attempts), (EventStatus::Processed, 1));
}

pub async fn concurrent_claims_never_take_the_same_event_twice(store: Store) {
    let keys: Vec<String> = (0..60).map(|n| format!("q{n}")).collect();
    let mut ids = orphaned_items(&store, &keys).await;
    // Twelve pollers of two "processes" at once, each taking up to 8.
    let mut tasks = Vec::new();
    for n in 0..12 {
        let store = store.clone();
        let owner = if n % 2 == 0 { "a" } else { "b" };
        tasks.push(tokio::spawn(async move {
            store.claim_due(owner, LEASE, 8).await.unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    // What is left after the race goes to one more poll.
    claimed.extend(store.claim_due("c", LEASE, 100).await.unwrap());
    claimed.sort_unstable();
    ids.sort_unstable();
    assert_eq!(claimed, ids, "every item claimed exactly once");
    assert!(store.claim_due("d", LEASE, 100).await.unwrap().is_empty());
}

/// The suite, as `#[tokio::test]`s for one backend opened by `$open` (an async
/// expression giving `(guard, Store)`; the guard lives as long as the test).
pub async fn events_page_by_cursor_either_way(store: Store) {
    let mut deliveries = Vec::new();
    for n in 0..3 {
        let (delivery, _) = deliver(&store, "me", &[item(&format!("p{n}"), None)]).await;
        deliveries.push(delivery);
    }
    let all = |f: super::EventFilter| {
        let store = store.clone();
        async move {
            store
                .list_events(&f)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<i64>>()
        }
    };
    let every = all(super::EventFilter::default()).await;
    assert_eq!(every.len(), 6, "three deliveries, an item each");
    // Oldest first: a page, then the rest after its last id.
    let first = all(super::EventFilter {
        limit: 4,
        ..Default::default()
    })
    .await;
    let rest = all(super::EventFilter {
        after_id: first.last().copied(),
        ..Default::default()
    })
    .await;
    assert_eq!([first, rest].concat(), every);
    // Newest first: the cursor is an upper bound.
    let newest = all(super::EventFilter {
        newest_first: true,
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(newest, vec![every[5], every[4]]);
    let older = all(super::EventFilter {
        newest_first: true,
        after_id: Some(every[4]),
        ..Default::default()
    })
    .await;
    assert_eq!(older, vec![every[3], every[2], every[1], every[0]]);
    // Deliveries only.
    let only = all(super::EventFilter {
        kind: Some(EventKind::Delivery),
        newest_first: true,
        ..Default::default()
    })
    .await;
    assert_eq!(only, deliveries.iter().rev().copied().collect::<Vec<_>>());
    // Tenants, oldest first.
    let a = store.create_tenant("A").await.unwrap();
    let b = store.create_tenant("B").await.unwrap();
    let names: Vec<(i64, String)> = store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, name, _)| (id, name))
        .collect();
    assert_eq!(names, vec![(a, "A".to_string()), (b, "B".to_string())]);
}

macro_rules! contract_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let (_guard, store) = $open.await;
                        super::$name(store).await;
                    }
                };
            }

            case!(tenants_and_sources);
            case!(leads_are_idempotent_and_need_a_mapped_tenant);
            case!(a_failed_item_delivered_again_is_processed_again);
            case!(inbound_messages_join_the_open_case_and_statuses_move_forward);
            case!(a_send_to_a_wrong_tenant_or_case_commits_nothing);
            case!(the_outbox_leases_and_retries_and_never_repeats_a_cut_off_send);
            case!(failures_show_in_the_dlq_and_old_events_are_pruned);
            case!(concurrent_writes_share_commits_and_fail_alone);
            case!(an_attempt_whose_lease_was_taken_over_writes_nothing);
            case!(concurrent_claims_never_take_the_same_event_twice);
            case!(events_page_by_cursor_either_way);
        }
    };
}

async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let store = Store::open(&url).await.unwrap();
    (dir, store)
}

contract_suite!(sqlite_backend, sqlite());

#[path = "../../tests/support/pg_cluster.rs"]
mod pg_cluster;

/// A fresh database on this test process's throwaway PostgreSQL cluster.
async fn postgres() -> ((), Store) {
    let url = tokio::task::spawn_blocking(|| pg_cluster::shared().fresh_database())
        .await
        .unwrap();
    let store = Store::open(&url).await.unwrap();
    ((), store)
}

contract_suite!(postgres_backend, postgres());
