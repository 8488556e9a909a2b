-- A contact is a phone, a provider's business-scoped user id (WhatsApp's
-- BSUID), or both: the phone becomes optional, each is unique per tenant.
ALTER TABLE contacts ALTER COLUMN phone DROP NOT NULL;
ALTER TABLE contacts ADD COLUMN user_id TEXT;
ALTER TABLE contacts ADD COLUMN parent_user_id TEXT;
ALTER TABLE contacts ADD COLUMN username TEXT;
ALTER TABLE contacts ADD CONSTRAINT contacts_tenant_id_user_id_key UNIQUE (tenant_id, user_id);
ALTER TABLE contacts ADD CONSTRAINT contacts_have_an_identity CHECK (phone IS NOT NULL OR user_id IS NOT NULL);
