-- One managed row per Membership object. Objects applied without a cluster carry no uid, so
-- each CLI run looks the uid up by namespace and name and mints one when the store has none:
-- two runs at once could both mint one and store the same Membership twice, each copy with
-- its own grants. Customers and workspaces already had this index; memberships get it now,
-- and the loser of such a race re-reads the uid and converges (see engine::run).
--
-- Copies stored before this migration are removed first: the copy an invitation points at
-- is kept (else the first by id), the others lose their roles, grants and live invitations,
-- and each removal is audited.
CREATE TABLE membership_duplicates AS
SELECT id, namespace, name FROM (
    SELECT m.id, m.namespace, m.name, ROW_NUMBER() OVER (
        PARTITION BY m.namespace, m.name
        ORDER BY (SELECT COUNT(*) FROM invitations i WHERE i.membership_id = m.id) DESC, m.id
    ) AS copy
    FROM memberships m WHERE m.managed AND m.origin = 'Membership'
) numbered WHERE copy > 1;

INSERT INTO audit (at, actor, action, kind, object, drift, before, after)
SELECT CAST(strftime('%s', 'now') AS INTEGER), 'migration', 'membership.deduplicate', 'Membership', d.namespace || '/' || d.name, 0,
       NULL, '{"removedCopy":"' || d.id || '"}'
FROM membership_duplicates d;

UPDATE invitations SET state = 'Revoked'
WHERE membership_id IN (SELECT id FROM membership_duplicates) AND state IN ('Pending', 'Sent');
DELETE FROM grants WHERE membership_id IN (SELECT id FROM membership_duplicates);
DELETE FROM role_assignments WHERE membership_id IN (SELECT id FROM membership_duplicates);
DELETE FROM memberships WHERE id IN (SELECT id FROM membership_duplicates);
DROP TABLE membership_duplicates;

CREATE UNIQUE INDEX memberships_managed_name ON memberships (namespace, name) WHERE managed AND origin = 'Membership';
