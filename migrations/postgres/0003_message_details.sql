-- WhatsApp message details: the provider's send time and the message a reply answers.
ALTER TABLE messages ADD COLUMN provider_timestamp BIGINT;
ALTER TABLE messages ADD COLUMN reply_to TEXT;
CREATE INDEX messages_by_contact ON messages (tenant_id, contact_id, created_at);
