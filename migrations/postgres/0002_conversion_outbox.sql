-- The outbox side of conversion_uploads: which plugin uploads a row, and when it may be tried again.
ALTER TABLE conversion_uploads ADD COLUMN source TEXT;
ALTER TABLE conversion_uploads ADD COLUMN next_attempt_at TIMESTAMPTZ;
CREATE INDEX conversion_uploads_due ON conversion_uploads (source, status, next_attempt_at);
