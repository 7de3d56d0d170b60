-- Invitation delivery. A token is stored only as its SHA-256 hash, so it cannot be
-- reproduced: a message re-sent after a crash between "sent" and "marked sent" carries a new
-- token under the same Message-ID. An invitation issue may therefore hold several tokens;
-- any one of them accepts, once (then the invitation is Accepted and all are refused). Tokens
-- of an earlier issue are kept so that they are refused as replaced (the issue is bounded).
DROP INDEX invitations_token;
ALTER TABLE invitations DROP COLUMN token_hash;
ALTER TABLE invitations ADD COLUMN reissues INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invitations ADD COLUMN accepted_by TEXT;
ALTER TABLE invitations ADD COLUMN accepted_account_type TEXT;
ALTER TABLE invitations ADD COLUMN last_error TEXT;
CREATE INDEX invitations_membership ON invitations (membership_id);
-- The leader looks for acceptances made by other processes (a standby's HTTP endpoint, the CLI).
CREATE INDEX invitations_accepted ON invitations (accepted_at) WHERE state = 'Accepted';

CREATE TABLE invitation_tokens (
    token_hash           TEXT PRIMARY KEY,
    invitation_id        INTEGER NOT NULL REFERENCES invitations (id) ON DELETE CASCADE,
    issue                INTEGER NOT NULL,
    created_at           INTEGER NOT NULL
);
CREATE INDEX invitation_tokens_invitation ON invitation_tokens (invitation_id);

-- The invitation an outbox entry delivers (membership and scope ids may contain '/', so the
-- idempotency key is not parsed back). NULL once the customer and its invitations are gone.
ALTER TABLE outbox ADD COLUMN invitation_id INTEGER REFERENCES invitations (id) ON DELETE SET NULL;

-- Entries queued before this migration: find their invitation by the key they were made with.
UPDATE outbox SET invitation_id = (
    SELECT i.id FROM invitations i
    WHERE outbox.idempotency_key = 'invitation/' || i.membership_id || '/' || i.scope_key || '/' || i.issue
) WHERE kind = 'invitation';
