-- Messages are scoped by tenant: two tenants may hold the same provider id, and
-- a status update finds only its own tenant's message. SQLite cannot change a
-- table's constraint in place, so the table is rebuilt with the same rows.
CREATE TABLE messages_by_tenant (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id          INTEGER NOT NULL REFERENCES tenants(id),
    contact_id         INTEGER REFERENCES contacts(id),
    case_id            INTEGER REFERENCES cases(id),
    channel            TEXT NOT NULL,
    direction          TEXT NOT NULL,
    external_id        TEXT,
    from_addr          TEXT,
    to_addr            TEXT,
    kind               TEXT NOT NULL,
    body               TEXT,
    media_id           TEXT,
    status             TEXT,
    error              TEXT,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    provider_timestamp INTEGER,
    reply_to           TEXT,
    UNIQUE (tenant_id, channel, external_id)
);

INSERT INTO messages_by_tenant (id, tenant_id, contact_id, case_id, channel, direction, external_id,
    from_addr, to_addr, kind, body, media_id, status, error, created_at, provider_timestamp, reply_to)
SELECT id, tenant_id, contact_id, case_id, channel, direction, external_id,
    from_addr, to_addr, kind, body, media_id, status, error, created_at, provider_timestamp, reply_to
FROM messages;

DROP TABLE messages;
ALTER TABLE messages_by_tenant RENAME TO messages;
CREATE INDEX messages_by_contact ON messages (tenant_id, contact_id, created_at);
