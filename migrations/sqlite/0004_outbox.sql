-- One outbox for everything that calls a provider on Portico's behalf (a send,
-- a conversion upload). A record is committed with its domain row, then
-- delivered by its plugin's `deliver` under a lease (claimed_by, lease_until),
-- at most once per (source, kind, idempotency_key). `delivering` is committed
-- before the provider is called, so an attempt cut off by a dead process is
-- seen as such and never silently repeated for kinds that are not idempotent.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    source           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    record_kind      TEXT NOT NULL CHECK (record_kind IN ('lead', 'conversion', 'message')),
    record_id        INTEGER NOT NULL,
    tenant_id        INTEGER REFERENCES tenants(id),
    payload          BLOB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
    error            TEXT,
    external_id      TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    claimed_by       TEXT,
    lease_until      TEXT,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (source, kind, idempotency_key)
);
CREATE INDEX outbox_due ON outbox (source, kind, status, next_attempt_at);

-- Conversions still waiting for upload move into the outbox.
INSERT INTO outbox (source, kind, idempotency_key, record_kind, record_id, tenant_id, payload,
                    status, attempts, next_attempt_at, created_at, updated_at)
SELECT source, 'conversion', idempotency_key, 'conversion', id, tenant_id,
       CAST(json_object('id', id, 'click_id_kind', click_id_kind, 'click_id', click_id,
                        'conversion_time', conversion_time, 'value', value, 'currency', currency,
                        'conversion_action', conversion_action, 'order_id', order_id) AS BLOB),
       'pending', attempts, next_attempt_at, created_at, created_at
FROM conversion_uploads WHERE status = 'pending' AND source IS NOT NULL;
