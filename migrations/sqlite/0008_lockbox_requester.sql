-- A requester's own requests, newest first ("my requests" in the console and the API), and a
-- request's history (the audit entries of one Lockbox request), each read through an index
-- rather than a scan of every request or entry ever stored.
CREATE INDEX lockbox_requests_requester ON lockbox_requests (requester, created_at);
CREATE INDEX audit_object ON audit (kind, object);
