-- A source's own settings (JSON object, in clear: e.g. conversion_action) and
-- credentials: their names in clear (for listing), their values sealed with
-- PORTICO_SECRET_KEY (ChaCha20-Poly1305, bound to the source's kind and key).
ALTER TABLE lead_sources ADD COLUMN settings_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE lead_sources ADD COLUMN secret_names TEXT NOT NULL DEFAULT '[]';
ALTER TABLE lead_sources ADD COLUMN secrets_sealed BLOB;
