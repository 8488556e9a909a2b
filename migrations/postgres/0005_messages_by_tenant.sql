-- Messages are scoped by tenant: two tenants may hold the same provider id, and
-- a status update finds only its own tenant's message.
ALTER TABLE messages DROP CONSTRAINT messages_channel_external_id_key;
ALTER TABLE messages ADD CONSTRAINT messages_tenant_channel_external_id_key
    UNIQUE (tenant_id, channel, external_id);
