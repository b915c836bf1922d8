-- Release metadata (one row per version, links included) and file records: included by
-- 0002_releases.sqlite.sql and 0003_releases.postgres.sql (BIGINT: INTEGER affinity in sqlite).
-- A file record whose entry is '{}' was deleted: its path answers 410.
CREATE TABLE versions (
    owner TEXT NOT NULL,
    idx TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    data TEXT NOT NULL,
    serial BIGINT NOT NULL,
    PRIMARY KEY (owner, idx, project, version)
);
CREATE TABLE files (
    relpath TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    idx TEXT NOT NULL,
    project TEXT NOT NULL,
    entry TEXT NOT NULL,
    serial BIGINT NOT NULL
);
CREATE INDEX files_by_project ON files (owner, idx, project);
