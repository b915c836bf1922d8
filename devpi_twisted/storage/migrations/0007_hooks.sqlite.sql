-- Webhooks (model/hooks.py): the hooks (not index state: no serial, not in the
-- changelog) and their outbox, one row per hook and event, written in the transaction
-- of the change that caused the event; the primary's delivery service sends them.
CREATE TABLE hooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    creator TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX hooks_scope ON hooks (scope);
CREATE TABLE hook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hook INTEGER NOT NULL,
    serial INTEGER NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    tries INTEGER NOT NULL,
    created REAL NOT NULL,
    next_at REAL NOT NULL,
    first_at REAL,
    last_at REAL,
    last_error TEXT
);
CREATE INDEX hook_deliveries_pending ON hook_deliveries (status, hook, id);
CREATE INDEX hook_deliveries_hook ON hook_deliveries (hook, id);
