-- Token lifecycle bindings: DPoP, mTLS, PAR, online_access sessions, rotation chain.
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens boolean NOT NULL DEFAULT false;
ALTER TABLE clients ADD COLUMN require_par boolean NOT NULL DEFAULT false;
ALTER TABLE clients ADD COLUMN tls_client_auth_subject_dn text NOT NULL DEFAULT '';
ALTER TABLE auth_codes ADD COLUMN dpop_jkt text NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN dpop_jkt text NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN cert_thumbprint text NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN session_hash bytea;
ALTER TABLE refresh_tokens ADD COLUMN successor_hash bytea;
