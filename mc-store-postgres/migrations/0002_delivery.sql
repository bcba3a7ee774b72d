-- Relay core v2: delivery states and one session per first client message.

ALTER TABLE messages ADD COLUMN delivery TEXT
    CHECK (delivery IN ('stored', 'sent', 'started', 'answered', 'failed'));
-- Messages stored before delivery states existed are taken as delivered.
UPDATE messages SET delivery = 'answered' WHERE role = 'user';
-- Small: only messages still on their way.
CREATE INDEX messages_pending ON messages (created_at)
    WHERE delivery IN ('stored', 'sent', 'started');

ALTER TABLE chat_sessions ADD COLUMN origin_client_msg_id UUID;
ALTER TABLE chat_sessions ADD CONSTRAINT chat_sessions_origin_key
    UNIQUE (user_id, origin_client_msg_id);
