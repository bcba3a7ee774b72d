-- Mission Control relay, SQLite schema.
-- Ids are UUID v7 as 16-byte BLOBs; times are INTEGER microseconds since the Unix epoch (UTC);
-- booleans are INTEGER 0/1; JSON is TEXT.

CREATE TABLE organizations (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id              BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    username        TEXT NOT NULL COLLATE NOCASE,
    email           TEXT,
    phone           TEXT,
    password_hash   TEXT NOT NULL,
    display_name    TEXT,
    avatar_url      TEXT,
    role            TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    status          TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    last_login_at   INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (organization_id, username)
) STRICT;

CREATE TABLE login_failures (
    user_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at      INTEGER NOT NULL
) STRICT;
CREATE INDEX login_failures_user_at ON login_failures (user_id, at);

CREATE TABLE refresh_tokens (
    id          BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   BLOB NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked     INTEGER NOT NULL DEFAULT 0,
    replaced_by BLOB,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE registration_tokens (
    id              BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    token_hash      BLOB NOT NULL UNIQUE,
    label           TEXT NOT NULL,
    expires_at      INTEGER,
    max_uses        INTEGER,
    uses            INTEGER NOT NULL DEFAULT 0,
    revoked         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX registration_tokens_org ON registration_tokens (organization_id, id);

CREATE TABLE gateways (
    id                BLOB PRIMARY KEY NOT NULL,
    organization_id   BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    url               TEXT,
    workspace_root    TEXT,
    version           TEXT,
    capabilities      TEXT NOT NULL DEFAULT '[]',
    status            TEXT NOT NULL CHECK (status IN ('pending', 'online', 'offline', 'error')),
    relay_token_hash  BLOB NOT NULL,
    last_heartbeat_at INTEGER,
    connection_info   TEXT NOT NULL DEFAULT '{}',
    auto_registered   INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (organization_id, name)
) STRICT;
-- The liveness sweep looks only at gateways that can go stale.
CREATE INDEX gateways_live ON gateways (status, last_heartbeat_at)
    WHERE status IN ('online', 'error');

CREATE TABLE agents (
    id          BLOB PRIMARY KEY NOT NULL,
    gateway_id  BLOB NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    agent_key   TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'gone')),
    created_at  INTEGER NOT NULL,
    UNIQUE (gateway_id, agent_key)
) STRICT;

CREATE TABLE assignments (
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id    BLOB NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('user', 'owner')),
    board_name  TEXT,
    assigned_by BLOB REFERENCES users (id) ON DELETE SET NULL,
    assigned_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, agent_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX assignments_agent ON assignments (agent_id);
CREATE INDEX assignments_assigned_by ON assignments (assigned_by);

CREATE TABLE chat_sessions (
    id              BLOB PRIMARY KEY NOT NULL,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id        BLOB NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    gateway_id      BLOB NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    session_key     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'closed')),
    last_seq        INTEGER NOT NULL DEFAULT 0,
    last_message_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX chat_sessions_user ON chat_sessions (user_id, id);
CREATE INDEX chat_sessions_agent ON chat_sessions (agent_id);
CREATE INDEX chat_sessions_gateway ON chat_sessions (gateway_id);

CREATE TABLE messages (
    id            BLOB PRIMARY KEY NOT NULL,
    session_id    BLOB NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'agent', 'system')),
    content       TEXT NOT NULL,
    client_msg_id BLOB,
    run_id        TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (session_id, seq),
    UNIQUE (session_id, client_msg_id)
) STRICT;

CREATE INDEX messages_client_msg ON messages (client_msg_id) WHERE client_msg_id IS NOT NULL;

CREATE TABLE activity_events (
    id              BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    actor           TEXT NOT NULL,
    target_type     TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX activity_events_org ON activity_events (organization_id, id);
