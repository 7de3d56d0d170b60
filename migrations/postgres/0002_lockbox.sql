-- Customer Lockbox: one policy per customer, and requests with their whole lifecycle.
-- due_at is the next deadline of a live request (pending deadline, then access deadline);
-- NULL once the request is closed, so the expiry sweep reads only what is due.

CREATE TABLE lockbox_policies (
    uid                  TEXT PRIMARY KEY,
    customer_uid         TEXT NOT NULL REFERENCES customers (uid) ON DELETE CASCADE,
    namespace            TEXT NOT NULL,
    name                 TEXT NOT NULL,
    managed              BOOLEAN NOT NULL DEFAULT TRUE,
    enabled              BOOLEAN NOT NULL,
    approvers            TEXT NOT NULL,
    pending_ttl_seconds  BIGINT NOT NULL,
    max_access_seconds   BIGINT NOT NULL,
    workloads            TEXT NOT NULL,
    recipients           TEXT NOT NULL,
    spec_hash            TEXT NOT NULL,
    row_version          BIGINT NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX lockbox_policies_one_per_customer ON lockbox_policies (customer_uid) WHERE managed;

CREATE TABLE lockbox_requests (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_uid         TEXT NOT NULL REFERENCES customers (uid) ON DELETE CASCADE,
    requester            TEXT NOT NULL,
    workload             TEXT NOT NULL,
    case_id              TEXT NOT NULL,
    reason               TEXT NOT NULL,
    requested_seconds    BIGINT NOT NULL,
    approvers            TEXT NOT NULL,
    state                TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    pending_deadline     BIGINT,
    decided_at           BIGINT,
    decided_by           TEXT,
    decision_reason      TEXT,
    access_deadline      BIGINT,
    closed_at            BIGINT,
    expired_by_inaction  BOOLEAN NOT NULL DEFAULT FALSE,
    due_at               BIGINT,
    row_version          BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX lockbox_requests_due ON lockbox_requests (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX lockbox_requests_customer ON lockbox_requests (customer_uid, created_at);
