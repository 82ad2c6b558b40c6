-- MFA at login: a correct password for an account with MFA on is recorded as
-- 'mfa_pending', neither a failure nor a success for the lockout, until the second factor
-- settles it ('success') or fails ('failure' rows of its own).
ALTER TABLE accounts_loginattempt DROP CONSTRAINT accounts_loginattempt_outcome;
ALTER TABLE accounts_loginattempt ADD CONSTRAINT accounts_loginattempt_outcome
    CHECK (outcome IN ('pending', 'mfa_pending', 'failure', 'success', 'unlock'));
