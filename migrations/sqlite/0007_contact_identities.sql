-- no-transaction
-- A contact is a phone, a provider's business-scoped user id (WhatsApp's
-- BSUID), or both: the phone becomes optional, each is unique per tenant.
--
-- SQLite cannot drop a NOT NULL in place, so the table is rebuilt with the
-- same rows and ids. Cases and messages point at contacts: foreign keys are
-- off while the table is swapped (that cannot change inside a transaction,
-- hence no-transaction and the explicit one below; with them on, a rename
-- rewrites the other tables' references). If the process stops after the
-- COMMIT but before sqlx records this migration, it runs again at the next
-- start, and copies the same rows again: nothing else runs in between.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE contacts_with_identities (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id),
    phone           TEXT,
    user_id         TEXT,
    parent_user_id  TEXT,
    username        TEXT,
    name            TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (tenant_id, phone),
    UNIQUE (tenant_id, user_id),
    CHECK (phone IS NOT NULL OR user_id IS NOT NULL)
);
INSERT INTO contacts_with_identities (id, tenant_id, phone, name, created_at)
    SELECT id, tenant_id, phone, name, created_at FROM contacts;
DROP TABLE contacts;
ALTER TABLE contacts_with_identities RENAME TO contacts;
COMMIT;
PRAGMA foreign_keys = ON;
