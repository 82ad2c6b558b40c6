-- Administration and integrations: the permissions the new admin routes check, the seeded
-- read-only `auditors` group, the `introspect` API-key scope, and email-change tokens.

INSERT INTO auth_permission (name, app_label, codename) VALUES
    ('Can view MFA change', 'accounts', 'view_mfachangelog'),
    ('Can add MFA change', 'accounts', 'add_mfachangelog');

-- Reads audit data, changes nothing (no review, no runs, no retention or user changes).
INSERT INTO auth_group (name) VALUES ('auditors');
INSERT INTO auth_group_permissions (group_id, permission_id)
SELECT g.id, p.id
  FROM auth_group g
  JOIN auth_permission p ON (p.app_label, p.codename) IN (
       ('audit_log', 'view_auditlog'), ('audit_log', 'view_auditlogsummary'),
       ('audit_log', 'view_jobrun'), ('audit_log', 'view_retentionpolicy'))
 WHERE g.name = 'auditors';

ALTER TABLE accounts_apikey DROP CONSTRAINT accounts_apikey_scopes;
ALTER TABLE accounts_apikey ADD CONSTRAINT accounts_apikey_scopes
    CHECK (scopes <@ ARRAY['me:read', 'audit:read', 'introspect']::text[] AND cardinality(scopes) > 0);

-- An email change is a one-time token sent to the new address; the address it confirms
-- travels with the token, so nothing changes on the account until it is used.
ALTER TABLE accounts_onetimetoken ADD COLUMN new_email varchar(254);
ALTER TABLE accounts_onetimetoken DROP CONSTRAINT accounts_onetimetoken_purpose;
ALTER TABLE accounts_onetimetoken ADD CONSTRAINT accounts_onetimetoken_purpose
    CHECK (purpose IN ('email_verification', 'password_reset', 'email_change'));
ALTER TABLE accounts_onetimetoken ADD CONSTRAINT accounts_onetimetoken_new_email
    CHECK ((purpose = 'email_change') = (new_email IS NOT NULL));

-- Who asked for a change that needs approval (a staff member resetting a user's MFA, or
-- the user themselves): the approver must be someone else.
ALTER TABLE accounts_mfachangelog
    ADD COLUMN requested_by_id uuid REFERENCES auth_user (id) ON DELETE SET NULL;

-- What a job run did, by kind of row (a cleanup's expired tokens, sessions, attempts,
-- exports...): `rows_affected` is the sum.
ALTER TABLE audit_log_jobrun ADD COLUMN details jsonb;
