-- The controller plans one Membership per reconcile and reads only the invitations of that
-- membership's subject; without this index each such read scans the customer's invitations.
CREATE INDEX invitations_subject ON invitations (customer_uid, subject_key);
