-- fhirgate PostgreSQL schema, version 1. Native types: bytea, timestamptz
-- (microsecond precision; NULL is the zero time), jsonb, text[].

CREATE TABLE users (
	id            text PRIMARY KEY,
	username      text NOT NULL UNIQUE,
	password_hash text NOT NULL,
	role          text NOT NULL,
	fhir_user     text NOT NULL,
	created_at    timestamptz,
	failed_logins integer NOT NULL DEFAULT 0,
	locked_until  timestamptz
);

CREATE TABLE clients (
	id                           text PRIMARY KEY,
	name                         text NOT NULL,
	secret_hash                  bytea,
	auth_method                  text NOT NULL,
	redirect_uris                text[],
	scope                        text NOT NULL,
	grant_types                  text[],
	launch_uri                   text NOT NULL,
	logo_uri                     text NOT NULL,
	id_token_signed_response_alg text NOT NULL,
	jwks                         bytea,
	jwks_uri                     text NOT NULL,
	registration_token_hash      bytea,
	disabled                     boolean NOT NULL,
	created_at                   timestamptz,
	updated_at                   timestamptz
);

CREATE TABLE launches (
	hash       bytea PRIMARY KEY,
	context    jsonb NOT NULL,
	created_at timestamptz,
	expires_at timestamptz,
	used_at    timestamptz
);

CREATE TABLE auth_requests (
	id             text PRIMARY KEY,
	client_id      text NOT NULL,
	redirect_uri   text NOT NULL,
	state          text NOT NULL,
	scope          text NOT NULL,
	nonce          text NOT NULL,
	code_challenge text NOT NULL,
	audience       text NOT NULL,
	launch         jsonb,
	user_id        text NOT NULL,
	patient        text NOT NULL,
	response_mode  text NOT NULL,
	created_at     timestamptz,
	expires_at     timestamptz
);
CREATE INDEX auth_requests_expires ON auth_requests (expires_at);

CREATE TABLE auth_codes (
	hash           bytea PRIMARY KEY,
	client_id      text NOT NULL,
	redirect_uri   text NOT NULL,
	code_challenge text NOT NULL,
	scope          text NOT NULL,
	user_id        text NOT NULL,
	nonce          text NOT NULL,
	auth_time      timestamptz,
	context        jsonb NOT NULL,
	family_id      text NOT NULL,
	created_at     timestamptz,
	expires_at     timestamptz,
	used_at        timestamptz
);

CREATE TABLE sessions (
	hash       bytea PRIMARY KEY,
	user_id    text NOT NULL,
	csrf_token text NOT NULL,
	auth_time  timestamptz,
	created_at timestamptz,
	last_seen  timestamptz,
	expires_at timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE consents (
	user_id    text NOT NULL,
	client_id  text NOT NULL,
	scope      text NOT NULL,
	created_at timestamptz,
	updated_at timestamptz,
	PRIMARY KEY (user_id, client_id)
);

CREATE TABLE token_families (
	id         text PRIMARY KEY,
	client_id  text NOT NULL,
	user_id    text NOT NULL,
	scope      text NOT NULL,
	context    jsonb NOT NULL,
	created_at timestamptz,
	expires_at timestamptz,
	revoked_at timestamptz,
	reason     text NOT NULL
);
CREATE INDEX token_families_user_client ON token_families (user_id, client_id);

CREATE TABLE refresh_tokens (
	hash       bytea PRIMARY KEY,
	family_id  text NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
	client_id  text NOT NULL,
	user_id    text NOT NULL,
	scope      text NOT NULL,
	created_at timestamptz,
	expires_at timestamptz,
	used_at    timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE signing_keys (
	seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kid               text NOT NULL UNIQUE,
	alg               text NOT NULL,
	public_jwk        bytea,
	encrypted_private bytea,
	created_at        timestamptz,
	active            boolean NOT NULL,
	retired_at        timestamptz
);
-- At most one active key per algorithm.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE active;

CREATE TABLE registration_tokens (
	hash       bytea PRIMARY KEY,
	created_at timestamptz,
	expires_at timestamptz
);

CREATE TABLE patients (
	id          text PRIMARY KEY,
	name        text NOT NULL,
	name_folded text NOT NULL, -- strings.ToLower(name), for case-insensitive search
	birth_date  text NOT NULL
);
CREATE INDEX patients_order ON patients (name_folded COLLATE "C", name COLLATE "C", id COLLATE "C");
