-- Full-text search (storage/searchrows.py writes the rows, searchplans.py queries them):
-- one row per searchable document, i.e. a version of a stage, a page of its docs, or the
-- name of a project a mirror holds. search_fts indexes the text of search_docs (external
-- content); the triggers keep it in step (rows are only inserted and deleted).
CREATE TABLE search_docs (
    id INTEGER PRIMARY KEY,
    stage TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT,
    kind TEXT NOT NULL,
    page TEXT,
    display TEXT NOT NULL,
    name TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX search_docs_key ON search_docs (stage, project, version);
CREATE VIRTUAL TABLE search_fts USING fts5(
    name, title, body, content='search_docs', content_rowid='id', tokenize='porter unicode61');
CREATE TRIGGER search_docs_added AFTER INSERT ON search_docs BEGIN
    INSERT INTO search_fts (rowid, name, title, body) VALUES (new.id, new.name, new.title, new.body);
END;
CREATE TRIGGER search_docs_removed AFTER DELETE ON search_docs BEGIN
    INSERT INTO search_fts (search_fts, rowid, name, title, body)
        VALUES ('delete', old.id, old.name, old.title, old.body);
END;
-- one row once the rows of what was stored before this table existed are built
CREATE TABLE search_built (built INTEGER NOT NULL);
