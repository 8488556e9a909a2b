-- Portico schema, SQLite dialect. Timestamps are UTC RFC 3339 text; ids are integers.
-- Every table of design.md §6 is created here so later features only fill them.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE lead_sources (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id),
    kind          TEXT NOT NULL,
    external_key  TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (kind, external_key)
);

CREATE TABLE leads (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id),
    source       TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    form_id      TEXT,
    ad_id        TEXT,
    campaign_id  TEXT,
    full_name    TEXT,
    email        TEXT,
    phone        TEXT,
    fields_json  TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (tenant_id, source, external_id)
);

CREATE TABLE contacts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    phone       TEXT NOT NULL,
    name        TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (tenant_id, phone)
);

CREATE TABLE cases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    contact_id  INTEGER NOT NULL REFERENCES contacts(id),
    status      TEXT NOT NULL DEFAULT 'open',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX cases_open_by_contact ON cases (tenant_id, contact_id, status);

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id),
    contact_id   INTEGER REFERENCES contacts(id),
    case_id      INTEGER REFERENCES cases(id),
    channel      TEXT NOT NULL,
    direction    TEXT NOT NULL,
    external_id  TEXT,
    from_addr    TEXT,
    to_addr      TEXT,
    kind         TEXT NOT NULL,
    body         TEXT,
    media_id     TEXT,
    status       TEXT,
    error        TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (channel, external_id)
);

CREATE TABLE conversion_uploads (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id          INTEGER REFERENCES tenants(id),
    click_id_kind      TEXT NOT NULL,
    click_id           TEXT NOT NULL,
    conversion_time    TEXT NOT NULL,
    value              REAL,
    currency           TEXT,
    conversion_action  TEXT,
    order_id           TEXT,
    idempotency_key    TEXT NOT NULL UNIQUE,
    status             TEXT NOT NULL CHECK (status IN ('logged', 'pending', 'uploaded', 'failed')),
    error              TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    uploaded_at        TEXT
);
CREATE INDEX conversion_uploads_by_status ON conversion_uploads (status, created_at);

-- One row per verified delivery (kind 'delivery', the raw bytes as received) and one
-- per item parse split it into (kind 'item', parent_id → its delivery). Items carry the
-- dedup key; the partial unique index makes a re-delivered item land on its first row.
CREATE TABLE webhook_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    source           TEXT NOT NULL,
    kind             TEXT NOT NULL DEFAULT 'delivery' CHECK (kind IN ('delivery', 'item')),
    parent_id        INTEGER REFERENCES webhook_events(id),
    correlation_id   TEXT NOT NULL,
    payload_hash     TEXT NOT NULL,
    payload          BLOB NOT NULL,
    headers_json     TEXT NOT NULL DEFAULT '{}',
    dedup_key        TEXT,
    item_kind        TEXT,
    tenant_kind      TEXT,
    tenant_key       TEXT,
    status           TEXT NOT NULL DEFAULT 'received'
                     CHECK (status IN ('received', 'processed', 'failed', 'dead', 'ignored')),
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    claimed_by       TEXT,
    lease_until      TEXT,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX webhook_events_dedup ON webhook_events (source, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX webhook_events_by_status ON webhook_events (status, next_attempt_at);
CREATE INDEX webhook_events_by_parent ON webhook_events (parent_id);
