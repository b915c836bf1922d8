-- The audit log (model/audit.py): security events, newest with the highest id. Not
-- index state: no serial, not in the changelog, pruned by age and count.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    client TEXT NOT NULL,
    idx TEXT,
    process TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_idx ON audit (idx, id);
