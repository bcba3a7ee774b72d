-- Relay core v2: delivery states, one session per first client message, and a message table
-- laid out for appends.
--
-- Messages keep their insertion order (the implicit rowid), so a batch of appends fills the
-- table's last pages instead of one page per session; the per-session order lives in one
-- index. The old `id` primary key index is gone (ids are UUID v7 made by the relay and never
-- looked up alone); client ids are unique per session through one index that also serves
-- lookups by client id alone.
CREATE TABLE messages_v2 (
    id            BLOB NOT NULL,
    session_id    BLOB NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'agent', 'system')),
    content       TEXT NOT NULL,
    client_msg_id BLOB,
    run_id        TEXT,
    created_at    INTEGER NOT NULL,
    -- User messages only: stored → sent → started → answered | failed.
    delivery      TEXT CHECK (delivery IN ('stored', 'sent', 'started', 'answered', 'failed'))
) STRICT;

-- Messages stored before delivery states existed are taken as delivered.
INSERT INTO messages_v2 (id, session_id, seq, role, content, client_msg_id, run_id, created_at, delivery)
    SELECT id, session_id, seq, role, content, client_msg_id, run_id, created_at,
           CASE role WHEN 'user' THEN 'answered' END
    FROM messages ORDER BY created_at, seq;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;

CREATE UNIQUE INDEX messages_session_seq ON messages (session_id, seq);
CREATE UNIQUE INDEX messages_client_msg ON messages (client_msg_id, session_id)
    WHERE client_msg_id IS NOT NULL;
-- Small: only messages still on their way.
CREATE INDEX messages_pending ON messages (delivery)
    WHERE delivery IN ('stored', 'sent', 'started');

ALTER TABLE chat_sessions ADD COLUMN origin_client_msg_id BLOB;
CREATE UNIQUE INDEX chat_sessions_origin ON chat_sessions (user_id, origin_client_msg_id)
    WHERE origin_client_msg_id IS NOT NULL;
