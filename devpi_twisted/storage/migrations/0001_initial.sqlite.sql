-- Users, indexes and the changelog.
CREATE TABLE changelog (
    serial INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    records TEXT NOT NULL
);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    pwhash TEXT,
    serial INTEGER NOT NULL
);
CREATE TABLE indexes (
    user TEXT NOT NULL REFERENCES users (name),
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    serial INTEGER NOT NULL,
    PRIMARY KEY (user, name)
);
