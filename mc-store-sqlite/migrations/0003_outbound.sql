-- Gateways the relay dials (SPEC §7.2): one row beside the gateway's own, gone with it.
-- The tokens are secrets: no API returns them and nothing logs them.
CREATE TABLE outbound_links (
    gateway_id         BLOB PRIMARY KEY NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    url                TEXT NOT NULL,
    token              TEXT,
    device_token       TEXT,
    pairing_request_id TEXT,
    last_error         TEXT,
    updated_at         INTEGER NOT NULL
) STRICT;

-- Instance-wide settings, e.g. the relay's OpenClaw device key (written once, then shared).
CREATE TABLE relay_settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
