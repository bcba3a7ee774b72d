-- Mission Control relay, PostgreSQL schema.
-- Constraint names are explicit: the store maps them to mc_core::ConflictKind.

CREATE TABLE organizations (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL CONSTRAINT organizations_name_key UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    username        TEXT NOT NULL,
    email           TEXT,
    phone           TEXT,
    password_hash   TEXT NOT NULL,
    display_name    TEXT,
    avatar_url      TEXT,
    role            TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    status          TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    last_login_at   TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
-- Usernames are ASCII; uniqueness and lookups ignore case.
CREATE UNIQUE INDEX users_org_username_key ON users (organization_id, lower(username));

CREATE TABLE login_failures (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_failures_user_at ON login_failures (user_id, at);

CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   UUID NOT NULL,
    token_hash  BYTEA NOT NULL CONSTRAINT refresh_tokens_token_hash_key UNIQUE,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE,
    replaced_by UUID,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE registration_tokens (
    id              UUID PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    token_hash      BYTEA NOT NULL CONSTRAINT registration_tokens_token_hash_key UNIQUE,
    label           TEXT NOT NULL,
    expires_at      TIMESTAMPTZ,
    max_uses        INTEGER CHECK (max_uses >= 0),
    uses            INTEGER NOT NULL DEFAULT 0,
    revoked         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX registration_tokens_org ON registration_tokens (organization_id, id);

CREATE TABLE gateways (
    id                UUID PRIMARY KEY,
    organization_id   UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    url               TEXT,
    workspace_root    TEXT,
    version           TEXT,
    capabilities      JSONB NOT NULL DEFAULT '[]',
    status            TEXT NOT NULL CHECK (status IN ('pending', 'online', 'offline', 'error')),
    relay_token_hash  BYTEA NOT NULL,
    last_heartbeat_at TIMESTAMPTZ,
    connection_info   JSONB NOT NULL DEFAULT '{}',
    auto_registered   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    CONSTRAINT gateways_org_name_key UNIQUE (organization_id, name)
);
-- The liveness sweep looks only at gateways that can go stale.
CREATE INDEX gateways_live ON gateways ((COALESCE(last_heartbeat_at, updated_at)))
    WHERE status IN ('online', 'error');

CREATE TABLE agents (
    id          UUID PRIMARY KEY,
    gateway_id  UUID NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    agent_key   TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'gone')),
    created_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT agents_gateway_key_key UNIQUE (gateway_id, agent_key)
);

CREATE TABLE assignments (
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id    UUID NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('user', 'owner')),
    board_name  TEXT,
    assigned_by UUID REFERENCES users (id) ON DELETE SET NULL,
    assigned_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT assignments_pair_key PRIMARY KEY (user_id, agent_id)
);
CREATE INDEX assignments_agent ON assignments (agent_id);
CREATE INDEX assignments_assigned_by ON assignments (assigned_by);

CREATE TABLE chat_sessions (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id        UUID NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    gateway_id      UUID NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    session_key     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'closed')),
    last_seq        BIGINT NOT NULL DEFAULT 0,
    last_message_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX chat_sessions_user ON chat_sessions (user_id, id);
CREATE INDEX chat_sessions_agent ON chat_sessions (agent_id);
CREATE INDEX chat_sessions_gateway ON chat_sessions (gateway_id);

CREATE TABLE messages (
    id            UUID PRIMARY KEY,
    session_id    UUID NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'agent', 'system')),
    content       TEXT NOT NULL,
    client_msg_id UUID,
    run_id        TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT messages_session_seq_key UNIQUE (session_id, seq),
    CONSTRAINT messages_session_client_msg_key UNIQUE (session_id, client_msg_id)
);

CREATE INDEX messages_client_msg ON messages (client_msg_id) WHERE client_msg_id IS NOT NULL;

CREATE TABLE activity_events (
    id              UUID PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    actor           TEXT NOT NULL,
    target_type     TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX activity_events_org ON activity_events (organization_id, id);
