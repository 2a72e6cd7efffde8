-- fhirgate SQLite schema, version 1.
-- Times are INTEGER unix microseconds (UTC); NULL means the zero time.
-- Slices and LaunchContext are JSON text; hashes and key material are BLOBs.

CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	username      TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	role          TEXT NOT NULL,
	fhir_user     TEXT NOT NULL,
	created_at    INTEGER,
	failed_logins INTEGER NOT NULL DEFAULT 0,
	locked_until  INTEGER
) STRICT;

CREATE TABLE clients (
	id                          TEXT PRIMARY KEY,
	name                        TEXT NOT NULL,
	secret_hash                 BLOB,
	auth_method                 TEXT NOT NULL,
	redirect_uris               TEXT NOT NULL,
	scope                       TEXT NOT NULL,
	grant_types                 TEXT NOT NULL,
	launch_uri                  TEXT NOT NULL,
	logo_uri                    TEXT NOT NULL,
	id_token_signed_response_alg TEXT NOT NULL,
	jwks                        BLOB,
	jwks_uri                    TEXT NOT NULL,
	registration_token_hash     BLOB,
	disabled                    INTEGER NOT NULL,
	created_at                  INTEGER,
	updated_at                  INTEGER
) STRICT;

CREATE TABLE launches (
	hash       BLOB PRIMARY KEY,
	context    TEXT NOT NULL,
	created_at INTEGER,
	expires_at INTEGER,
	used_at    INTEGER
) STRICT;

CREATE TABLE auth_requests (
	id             TEXT PRIMARY KEY,
	client_id      TEXT NOT NULL,
	redirect_uri   TEXT NOT NULL,
	state          TEXT NOT NULL,
	scope          TEXT NOT NULL,
	nonce          TEXT NOT NULL,
	code_challenge TEXT NOT NULL,
	audience       TEXT NOT NULL,
	launch         TEXT,
	user_id        TEXT NOT NULL,
	patient        TEXT NOT NULL,
	response_mode  TEXT NOT NULL,
	created_at     INTEGER,
	expires_at     INTEGER
) STRICT;
CREATE INDEX auth_requests_expires ON auth_requests (expires_at);

CREATE TABLE auth_codes (
	hash           BLOB PRIMARY KEY,
	client_id      TEXT NOT NULL,
	redirect_uri   TEXT NOT NULL,
	code_challenge TEXT NOT NULL,
	scope          TEXT NOT NULL,
	user_id        TEXT NOT NULL,
	nonce          TEXT NOT NULL,
	auth_time      INTEGER,
	context        TEXT NOT NULL,
	family_id      TEXT NOT NULL,
	created_at     INTEGER,
	expires_at     INTEGER,
	used_at        INTEGER
) STRICT;

CREATE TABLE sessions (
	hash       BLOB PRIMARY KEY,
	user_id    TEXT NOT NULL,
	csrf_token TEXT NOT NULL,
	auth_time  INTEGER,
	created_at INTEGER,
	last_seen  INTEGER,
	expires_at INTEGER
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE consents (
	user_id    TEXT NOT NULL,
	client_id  TEXT NOT NULL,
	scope      TEXT NOT NULL,
	created_at INTEGER,
	updated_at INTEGER,
	PRIMARY KEY (user_id, client_id)
) STRICT;

CREATE TABLE token_families (
	id         TEXT PRIMARY KEY,
	client_id  TEXT NOT NULL,
	user_id    TEXT NOT NULL,
	scope      TEXT NOT NULL,
	context    TEXT NOT NULL,
	created_at INTEGER,
	expires_at INTEGER,
	revoked_at INTEGER,
	reason     TEXT NOT NULL
) STRICT;
CREATE INDEX token_families_user_client ON token_families (user_id, client_id);

CREATE TABLE refresh_tokens (
	hash       BLOB PRIMARY KEY,
	family_id  TEXT NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
	client_id  TEXT NOT NULL,
	user_id    TEXT NOT NULL,
	scope      TEXT NOT NULL,
	created_at INTEGER,
	expires_at INTEGER,
	used_at    INTEGER
) STRICT;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE signing_keys (
	seq               INTEGER PRIMARY KEY AUTOINCREMENT,
	kid               TEXT NOT NULL UNIQUE,
	alg               TEXT NOT NULL,
	public_jwk        BLOB,
	encrypted_private BLOB,
	created_at        INTEGER,
	active            INTEGER NOT NULL,
	retired_at        INTEGER
);
-- At most one active key per algorithm.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE active = 1;

CREATE TABLE registration_tokens (
	hash       BLOB PRIMARY KEY,
	created_at INTEGER,
	expires_at INTEGER
) STRICT;

CREATE TABLE patients (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	name_folded TEXT NOT NULL, -- strings.ToLower(name), for case-insensitive search
	birth_date  TEXT NOT NULL
) STRICT;
CREATE INDEX patients_order ON patients (name_folded, name, id);
