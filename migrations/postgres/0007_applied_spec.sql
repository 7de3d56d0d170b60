-- The spec each object row was last written from, as JSON (with `managementPolicy` at its
-- default, as it is hashed into `spec_hash`): what `servicehub import` writes back as YAML,
-- so that applying its output plans nothing. The spec hash alone cannot be inverted, and
-- the other columns lose what the hash covers (the order of lists, group display names).
--
-- Empty for rows implied by another object (a Customer's default workspace and its
-- administrators' memberships) and for rows written before this migration: the planner
-- compares the column with the spec it would write, so each such object row is rewritten
-- once on its next reconcile or apply, and import works from then on.
ALTER TABLE customers ADD COLUMN applied_spec TEXT NOT NULL DEFAULT '';
ALTER TABLE workspaces ADD COLUMN applied_spec TEXT NOT NULL DEFAULT '';
ALTER TABLE memberships ADD COLUMN applied_spec TEXT NOT NULL DEFAULT '';
ALTER TABLE lockbox_policies ADD COLUMN applied_spec TEXT NOT NULL DEFAULT '';
