-- The people's side: authentication methods on sessions and codes (amr,
-- acr in the id_token), TOTP enrolments with hashed recovery codes.
ALTER TABLE sessions ADD COLUMN amr text NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN acr text NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN amr text NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN acr text NOT NULL DEFAULT '';

CREATE TABLE mfa_credentials (
	user_id       text PRIMARY KEY,
	sealed_secret bytea NOT NULL,
	confirmed     boolean NOT NULL DEFAULT false,
	last_step     bigint NOT NULL DEFAULT 0,
	created_at    timestamptz,
	updated_at    timestamptz
);

CREATE TABLE mfa_recovery_codes (
	user_id text NOT NULL REFERENCES mfa_credentials (user_id) ON DELETE CASCADE,
	hash    bytea NOT NULL,
	PRIMARY KEY (user_id, hash)
);

CREATE INDEX refresh_tokens_user_client ON refresh_tokens (user_id, client_id);
