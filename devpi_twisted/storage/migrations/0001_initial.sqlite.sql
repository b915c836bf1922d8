-- The serial counter, the changelog, users and indexes.
CREATE TABLE serial_counter (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    serial INTEGER NOT NULL
);
INSERT INTO serial_counter (id, serial) VALUES (0, -1);
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
    owner TEXT NOT NULL REFERENCES users (name),
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    serial INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
);
