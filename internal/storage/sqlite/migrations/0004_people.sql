-- The people's side: authentication methods on sessions and codes (amr,
-- acr in the id_token), TOTP enrolments with hashed recovery codes.
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN acr TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN amr TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN acr TEXT NOT NULL DEFAULT '';

CREATE TABLE mfa_credentials (
	user_id       TEXT PRIMARY KEY,
	sealed_secret BLOB NOT NULL,
	confirmed     INTEGER NOT NULL DEFAULT 0,
	last_step     INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER,
	updated_at    INTEGER
) STRICT;

CREATE TABLE mfa_recovery_codes (
	user_id TEXT NOT NULL REFERENCES mfa_credentials (user_id) ON DELETE CASCADE,
	hash    BLOB NOT NULL,
	PRIMARY KEY (user_id, hash)
) STRICT;

CREATE INDEX refresh_tokens_user_client ON refresh_tokens (user_id, client_id);
