-- Token lifecycle: PAR and DPoP on auth requests, the session behind a code,
-- the revocation list and the replay cache.
ALTER TABLE auth_requests ADD COLUMN prompt text NOT NULL DEFAULT '';
ALTER TABLE auth_requests ADD COLUMN dpop_jkt text NOT NULL DEFAULT '';
ALTER TABLE auth_requests ADD COLUMN pushed boolean NOT NULL DEFAULT false;
ALTER TABLE auth_codes ADD COLUMN session_hash bytea;

-- Revoked families are read from token_families (RevokedSince polls by time).
CREATE INDEX token_families_revoked ON token_families (revoked_at) WHERE revoked_at IS NOT NULL;

-- Revoked JWT access tokens, until their natural expiry.
CREATE TABLE revoked_access_tokens (
	jti        text PRIMARY KEY,
	revoked_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_access_tokens_revoked ON revoked_access_tokens (revoked_at);
CREATE INDEX revoked_access_tokens_expires ON revoked_access_tokens (expires_at);

-- One-time values (DPoP and assertion jti, request_uri) until they expire.
CREATE TABLE replays (
	key        text PRIMARY KEY,
	expires_at timestamptz NOT NULL
);
CREATE INDEX replays_expires ON replays (expires_at);
