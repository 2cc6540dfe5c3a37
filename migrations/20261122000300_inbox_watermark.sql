-- An inbox event is consumed when its sequence is at or below its workflow's
-- applied_seq, which the transition that applied it writes in the same
-- transaction. The per-event consumed_at mark said the same thing a second
-- time, at the price of rewriting every inbox row once (measured with
-- floe-bench W5: the marking UPDATE was the costliest statement per
-- transition batch, 1.4 ms for 25 events, and the unconsumed-events read
-- needed it filtered).
ALTER TABLE floe.inbox DROP COLUMN consumed_at;

COMMENT ON COLUMN floe.workflows.applied_seq IS
    'last inbox sequence applied: events with seq <= applied_seq are consumed, the others pending';
COMMENT ON COLUMN floe.workflows.next_seq IS 'last inbox sequence allocated';
