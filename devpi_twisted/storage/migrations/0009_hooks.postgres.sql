-- Webhooks (model/hooks.py): the hooks (not index state: no serial, not in the
-- changelog) and their outbox, one row per hook and event, written in the transaction
-- of the change that caused the event; the primary's delivery service sends them.
CREATE TABLE hooks (
    id BIGSERIAL PRIMARY KEY,
    scope TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    creator TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE INDEX hooks_scope ON hooks (scope);
CREATE TABLE hook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    hook BIGINT NOT NULL,
    serial BIGINT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    tries INTEGER NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    first_at DOUBLE PRECISION,
    last_at DOUBLE PRECISION,
    last_error TEXT
);
CREATE INDEX hook_deliveries_pending ON hook_deliveries (status, hook, id);
CREATE INDEX hook_deliveries_hook ON hook_deliveries (hook, id);
