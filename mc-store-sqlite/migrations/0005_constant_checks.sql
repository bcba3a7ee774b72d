-- The message table's CHECK constraints and the pending-delivery index, written without
-- `IN (…)` lists.
--
-- SQLite codes `x IN (a, b, c)` over more than two constants as a throwaway b-tree, built
-- again on every execution of a statement that evaluates it (a pager, a page cache and their
-- allocations, opened and closed each time). `role IN (3 values)`, `delivery IN (5 values)`
-- and the index's `delivery IN (3 values)` made every message insert and every delivery
-- update build three of them. The same rules as comparisons joined by OR cost nothing of the
-- kind. The rules themselves do not change.
CREATE TABLE messages_v3 (
    id            BLOB NOT NULL,
    session_id    BLOB NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    role          TEXT NOT NULL CHECK (role = 'user' OR role = 'agent' OR role = 'system'),
    content       TEXT NOT NULL,
    client_msg_id BLOB,
    run_id        TEXT,
    created_at    INTEGER NOT NULL,
    -- User messages only: stored → sent → started → answered | failed.
    delivery      TEXT CHECK (delivery = 'stored' OR delivery = 'sent' OR delivery = 'started'
                              OR delivery = 'answered' OR delivery = 'failed')
) STRICT;

INSERT INTO messages_v3 (id, session_id, seq, role, content, client_msg_id, run_id, created_at, delivery)
    SELECT id, session_id, seq, role, content, client_msg_id, run_id, created_at, delivery
    FROM messages ORDER BY rowid;
DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;

CREATE UNIQUE INDEX messages_session_seq ON messages (session_id, seq);
CREATE UNIQUE INDEX messages_client_msg ON messages (client_msg_id, session_id)
    WHERE client_msg_id IS NOT NULL;
-- Small: only messages still on their way. Queries that use it repeat this predicate word
-- for word (`chat.rs` `pending_deliveries`), which is how SQLite knows the index covers them.
CREATE INDEX messages_pending ON messages (delivery)
    WHERE delivery = 'stored' OR delivery = 'sent' OR delivery = 'started';
