-- The per-IP login limit counts attempts still being checked ('pending'), as the
-- per-identifier limit does, so a flood of parallel guesses from one address cannot all
-- pass the check before the first is recorded as a failure. IPv6 clients are grouped by /64.
DROP INDEX idx_loginattempt_ip;
CREATE INDEX idx_loginattempt_ip ON accounts_loginattempt (ip_address, created_at DESC)
    WHERE outcome IN ('failure', 'pending');
