-- One agent reply per run (`IdempotencyKey::Reply`): storing a run's reply again (a write
-- retried after a failure that may have committed, a run's end reported twice) gives back the
-- stored one, as a retried client id does.
--
-- Ordered by run id first: run ids are the request's message id (UUIDv7, in time order), so a
-- reply's entry goes at the end of the index, one page per commit however many sessions the
-- commit touches (an index led by the session would dirty one page per session).
--
-- A database written before this rule may hold a run's reply twice: the later copies stay,
-- detached from the run (their run id cleared), so the rule can hold without losing a message.
UPDATE messages SET run_id = NULL
WHERE rowid IN (
    SELECT m.rowid
    FROM messages AS m
    JOIN (SELECT run_id, session_id, min(rowid) AS kept FROM messages
          WHERE role = 'agent' AND run_id IS NOT NULL
          GROUP BY run_id, session_id HAVING count(*) > 1) AS d
      ON m.run_id = d.run_id AND m.session_id = d.session_id
    WHERE m.role = 'agent' AND m.rowid <> d.kept);

CREATE UNIQUE INDEX messages_run_reply ON messages (run_id, session_id) WHERE role = 'agent';
