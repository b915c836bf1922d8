-- The serial counter, the changelog, users and indexes.
CREATE TABLE serial_counter (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    serial BIGINT NOT NULL
);
INSERT INTO serial_counter (id, serial) VALUES (0, -1);
CREATE TABLE changelog (
    serial BIGINT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    records TEXT NOT NULL
);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    pwhash TEXT,
    serial BIGINT NOT NULL
);
CREATE TABLE indexes (
    owner TEXT NOT NULL REFERENCES users (name),
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    serial BIGINT NOT NULL,
    PRIMARY KEY (owner, name)
);
