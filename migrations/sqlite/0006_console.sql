-- The console (issue 15): who acted through which front door, sessions, sign-in links and
-- pending OpenID Connect logins.
--
-- Every audit entry now records its channel (operator, cli, console-oidc, console-email,
-- api-bearer) and the subject that channel authenticated. Entries written before this
-- migration keep an empty channel, shown as "not recorded (not authenticated)".
ALTER TABLE audit ADD COLUMN channel TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN subject TEXT NOT NULL DEFAULT '';

-- A session is found by the SHA-256 of the random id in its cookie; the id itself is never
-- stored. `expires_at` is the absolute end; the idle end is `seen_at` plus the configured
-- idle lifetime, checked at each request.
CREATE TABLE sessions (
    id_hash              TEXT PRIMARY KEY,
    email                TEXT NOT NULL,
    account_type         TEXT NOT NULL,
    method               TEXT NOT NULL,
    subject              TEXT NOT NULL,
    groups               TEXT NOT NULL DEFAULT '[]',
    csrf                 TEXT NOT NULL,
    address              TEXT NOT NULL DEFAULT '',
    created_at           INTEGER NOT NULL,
    seen_at              INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    revoked_at           INTEGER
);
CREATE INDEX sessions_email ON sessions (email);

-- Email-link sign-in: the token is made when the message is sent (the outbox claim), and only
-- its hash is kept. Single use; valid 15 minutes.
CREATE TABLE signin_tokens (
    token_hash           TEXT PRIMARY KEY,
    email                TEXT NOT NULL,
    outbox_id            INTEGER,
    return_to            TEXT NOT NULL DEFAULT '/',
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    used_at              INTEGER
);

-- An authorization request sent to the OpenID provider and not yet answered: found by the
-- hash of its `state`, taken once, 10 minutes at most. Kept in the store so any replica can
-- receive the callback.
CREATE TABLE oidc_logins (
    state_hash           TEXT PRIMARY KEY,
    verifier             TEXT NOT NULL,
    nonce                TEXT NOT NULL,
    return_to            TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL
);
