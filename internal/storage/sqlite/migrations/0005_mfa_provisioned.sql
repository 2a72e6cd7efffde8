-- A TOTP enrolment an administrator provisioned out of band
-- (login.mfa_enrolment: provisioned); only such a pending enrolment may be
-- confirmed in that mode.
ALTER TABLE mfa_credentials ADD COLUMN provisioned INTEGER NOT NULL DEFAULT 0;
