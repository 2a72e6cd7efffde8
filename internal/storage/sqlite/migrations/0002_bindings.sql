-- Token lifecycle bindings: DPoP, mTLS, PAR, online_access sessions, rotation chain.
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN require_par INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN tls_client_auth_subject_dn TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN cert_thumbprint TEXT NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN session_hash BLOB;
ALTER TABLE refresh_tokens ADD COLUMN successor_hash BLOB;
