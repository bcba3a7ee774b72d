-- One agent reply per run (`IdempotencyKey::Reply`): storing a run's reply again gives back the
-- stored one, as a retried client id does. Above all a batch whose answer was lost (the
-- connection dropped after `mc_write_batch` committed) and is written again message by message
-- must not store its replies twice.
--
-- Ordered by run id first: run ids are the request's message id (UUIDv7, in time order), so
-- new entries go at the end of the index.
--
-- A database written before this rule may hold a run's reply twice: the later copies stay,
-- detached from the run (their run id cleared), so the rule can hold without losing a message.
UPDATE messages AS m SET run_id = NULL
FROM (SELECT session_id, seq,
             row_number() OVER (PARTITION BY session_id, run_id ORDER BY seq) AS copy
      FROM messages WHERE role = 'agent' AND run_id IS NOT NULL) AS d
WHERE d.copy > 1 AND m.session_id = d.session_id AND m.seq = d.seq;

CREATE UNIQUE INDEX messages_run_reply_key ON messages (run_id, session_id) WHERE role = 'agent';
