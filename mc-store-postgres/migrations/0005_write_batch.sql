-- Two changes to the hot path of a group commit (BENCHMARKS.md, 2026-12-04).

-- 1. Fewer indexes on messages, five to three, as in the SQLite schema. A message is found by
-- (session, seq) and by its client id, never by its id alone: (session, seq) becomes the
-- primary key, and one unique index on (client id, session) both keeps client ids unique per
-- session and serves lookups by client id alone (it keeps the old constraint's name, which
-- the store maps to its conflict). Each index costs every insert and every non-HOT update.
ALTER TABLE messages DROP CONSTRAINT messages_pkey;
ALTER TABLE messages DROP CONSTRAINT messages_session_seq_key;
ALTER TABLE messages ADD PRIMARY KEY (session_id, seq);
ALTER TABLE messages DROP CONSTRAINT messages_session_client_msg_key;
DROP INDEX messages_client_msg;
CREATE UNIQUE INDEX messages_session_client_msg_key ON messages (client_msg_id, session_id)
    WHERE client_msg_id IS NOT NULL;

-- 2. One group commit in one round trip (BENCHMARKS.md, 2026-12-04): the writer calls this
-- function as a statement of its own, so the batch is one transaction without BEGIN and
-- COMMIT round trips, and its steps run inside the server.
--
-- The caller plans the batch (`mc_core::plan_append_batch`): which messages are new rows,
-- how many rows each session gets (`session_counts`) and each row's place among its
-- session's new rows, from 1 (`row_places`). A row's seq is its session's `last_seq` before
-- the batch plus its place. Rows of a session that does not exist are not inserted; the
-- sessions that do come back with their new `last_seq`. A row whose (session, client id) is
-- stored already fails the whole call with a unique violation on
-- `messages_session_client_msg_key`, and nothing of the batch is kept. Delivery states are
-- applied last, forward only (so the highest rank per message wins, in any order), and see
-- the new rows.
--
-- Every statement reads a table only by a unique key (one session, one message), whatever
-- plan PostgreSQL caches for it. PL/pgSQL keeps a generic plan per statement for the
-- connection's life, and set-wise statements (`= ANY`, joins with `UNNEST`) planned while
-- the tables were small scanned them whole until the next ANALYZE: measured, the relay's
-- round trips fell to a third on a new database.
CREATE FUNCTION mc_write_batch(
    session_ids     UUID[],
    session_counts  BIGINT[],
    session_ats     TIMESTAMPTZ[],
    row_ids         UUID[],
    row_sessions    UUID[],
    row_places      BIGINT[],
    row_roles       TEXT[],
    row_contents    TEXT[],
    row_clients     UUID[],
    row_runs        TEXT[],
    row_ats         TIMESTAMPTZ[],
    row_deliveries  TEXT[],
    update_sessions UUID[],
    update_seqs     BIGINT[],
    update_states   TEXT[],
    update_ranks    INT[]
) RETURNS TABLE (bumped_session UUID, bumped_last_seq BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    i           BIGINT;
    new_last    BIGINT;
    found_ids   UUID[] := '{}';
    found_bases BIGINT[] := '{}';
BEGIN
    -- Bump the sessions in id order (each update takes the session's row lock), so that
    -- batches of several instances cannot deadlock.
    FOR i IN SELECT s.place FROM UNNEST(session_ids) WITH ORDINALITY AS s(id, place)
             ORDER BY s.id LOOP
        UPDATE chat_sessions SET last_seq = last_seq + session_counts[i],
            last_message_at = session_ats[i]
        WHERE id = session_ids[i]
        RETURNING last_seq INTO new_last;
        IF FOUND THEN
            found_ids := found_ids || session_ids[i];
            found_bases := found_bases || (new_last - session_counts[i]);
            bumped_session := session_ids[i];
            bumped_last_seq := new_last;
            RETURN NEXT;
        END IF;
    END LOOP;

    INSERT INTO messages (id, session_id, seq, role, content, client_msg_id, run_id, created_at,
        delivery)
    SELECT r.id, r.session_id, b.base + r.place, r.role, r.content, r.client, r.run, r.at,
        r.delivery
    FROM UNNEST(row_ids, row_sessions, row_places, row_roles, row_contents, row_clients,
                row_runs, row_ats, row_deliveries)
         AS r(id, session_id, place, role, content, client, run, at, delivery)
    JOIN UNNEST(found_ids, found_bases) AS b(id, base) ON b.id = r.session_id;

    FOR i IN 1 .. COALESCE(array_length(update_sessions, 1), 0) LOOP
        UPDATE messages SET delivery = update_states[i]
        WHERE session_id = update_sessions[i] AND seq = update_seqs[i]
          AND (CASE delivery WHEN 'stored' THEN 0 WHEN 'sent' THEN 1 WHEN 'started' THEN 2
               WHEN 'failed' THEN 3 WHEN 'answered' THEN 4 END) < update_ranks[i];
    END LOOP;
END
$$;
