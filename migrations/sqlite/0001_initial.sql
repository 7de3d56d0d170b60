-- servicehub store, SQLite dialect. Times are Unix seconds (UTC). Rows that come from
-- Kubernetes objects are keyed by metadata.uid; namespace/name are for display and lookup.

CREATE TABLE customers (
    uid                  TEXT PRIMARY KEY,
    namespace            TEXT NOT NULL,
    name                 TEXT NOT NULL,
    managed              BOOLEAN NOT NULL DEFAULT 1,
    display_name         TEXT NOT NULL,
    agreement_kind       TEXT NOT NULL,
    agreement_id         TEXT NOT NULL,
    start_date           TEXT NOT NULL,
    end_date             TEXT,
    administration_model TEXT NOT NULL,
    admin_group_id       TEXT,
    settings             TEXT NOT NULL,
    newsletters          TEXT NOT NULL,
    phase                TEXT NOT NULL,
    deletion_policy      TEXT NOT NULL,
    spec_hash            TEXT NOT NULL,
    row_version          INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX customers_managed_name ON customers (namespace, name) WHERE managed;

CREATE TABLE workspaces (
    id                   TEXT PRIMARY KEY,
    customer_uid         TEXT NOT NULL REFERENCES customers (uid) ON DELETE CASCADE,
    namespace            TEXT NOT NULL,
    name                 TEXT NOT NULL,
    managed              BOOLEAN NOT NULL DEFAULT 1,
    origin               TEXT NOT NULL,
    display_name         TEXT NOT NULL,
    description          TEXT,
    is_default           BOOLEAN NOT NULL,
    allow_personal       BOOLEAN,
    personal_allowed     BOOLEAN NOT NULL,
    support_benefits     TEXT NOT NULL,
    deletion_policy      TEXT NOT NULL,
    spec_hash            TEXT NOT NULL,
    row_version          INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX workspaces_one_default ON workspaces (customer_uid) WHERE is_default AND managed;
CREATE UNIQUE INDEX workspaces_managed_name ON workspaces (namespace, name) WHERE managed;

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_uid         TEXT NOT NULL REFERENCES customers (uid) ON DELETE CASCADE,
    email                TEXT NOT NULL,
    display_name         TEXT NOT NULL,
    account_type         TEXT NOT NULL,
    UNIQUE (customer_uid, email)
);

CREATE TABLE user_workspaces (
    user_id              INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id         TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    state                TEXT NOT NULL,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (user_id, workspace_id)
);

CREATE TABLE memberships (
    id                   TEXT PRIMARY KEY,
    customer_uid         TEXT NOT NULL REFERENCES customers (uid) ON DELETE CASCADE,
    workspace_id         TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    origin               TEXT NOT NULL,
    namespace            TEXT NOT NULL,
    name                 TEXT NOT NULL,
    managed              BOOLEAN NOT NULL DEFAULT 1,
    subject_kind         TEXT NOT NULL,
    subject_key          TEXT NOT NULL,
    user_id              INTEGER REFERENCES users (id),
    deletion_policy      TEXT NOT NULL,
    spec_hash            TEXT NOT NULL,
    row_version          INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX memberships_customer ON memberships (customer_uid, workspace_id);
CREATE INDEX memberships_subject ON memberships (customer_uid, subject_key);

CREATE TABLE role_assignments (
    membership_id        TEXT NOT NULL REFERENCES memberships (id) ON DELETE CASCADE,
    role                 TEXT NOT NULL,
    PRIMARY KEY (membership_id, role)
);

CREATE TABLE grants (
    membership_id        TEXT NOT NULL REFERENCES memberships (id) ON DELETE CASCADE,
    permission           TEXT NOT NULL,
    source               TEXT NOT NULL,
    scope                TEXT NOT NULL,
    PRIMARY KEY (membership_id, permission, source)
);

CREATE TABLE invitations (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_uid         TEXT NOT NULL REFERENCES customers (uid) ON DELETE CASCADE,
    membership_id        TEXT NOT NULL,
    scope_key            TEXT NOT NULL,
    subject_key          TEXT NOT NULL,
    email                TEXT NOT NULL,
    issue                INTEGER NOT NULL,
    token_hash           TEXT,
    state                TEXT NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    sent_at              INTEGER,
    expires_at           INTEGER,
    accepted_at          INTEGER,
    UNIQUE (scope_key, subject_key)
);
CREATE UNIQUE INDEX invitations_token ON invitations (token_hash) WHERE token_hash IS NOT NULL;
CREATE INDEX invitations_due ON invitations (expires_at) WHERE state = 'Sent';

CREATE TABLE outbox (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                 TEXT NOT NULL,
    idempotency_key      TEXT NOT NULL UNIQUE,
    payload              TEXT NOT NULL,
    state                TEXT NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    sent_at              INTEGER,
    last_error           TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'Pending';

CREATE TABLE audit (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    at                   INTEGER NOT NULL,
    actor                TEXT NOT NULL,
    action               TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    object               TEXT NOT NULL,
    drift                BOOLEAN NOT NULL DEFAULT 0,
    before               TEXT,
    after                TEXT
);
CREATE INDEX audit_kind ON audit (kind, at);

-- The audit log is append-only: the store refuses to change or remove an entry.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
