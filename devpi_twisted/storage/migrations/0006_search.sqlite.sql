-- Full-text search (storage/searchrows.py writes the rows, searchplans.py queries them):
-- one row per searchable document, i.e. a version of a stage, a page of its docs, or the
-- name of a project a mirror holds. search_fts indexes the text of search_docs (external
-- content); the triggers keep it in step (rows are only inserted and deleted). ``tag``
-- is one token naming the stage (searchrows.stage_tag): the query picks the readable
-- stages inside FTS5, without looking up each match's row.
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
    body TEXT NOT NULL,
    tag TEXT NOT NULL
);
CREATE INDEX search_docs_key ON search_docs (stage, project, version);
CREATE VIRTUAL TABLE search_fts USING fts5(
    name, title, body, tag, content='search_docs', content_rowid='id', tokenize='porter unicode61',
    prefix='2 3 4');
CREATE TRIGGER search_docs_added AFTER INSERT ON search_docs BEGIN
    INSERT INTO search_fts (rowid, name, title, body, tag)
        VALUES (new.id, new.name, new.title, new.body, new.tag);
END;
CREATE TRIGGER search_docs_removed AFTER DELETE ON search_docs BEGIN
    INSERT INTO search_fts (search_fts, rowid, name, title, body, tag)
        VALUES ('delete', old.id, old.name, old.title, old.body, old.tag);
END;
-- one row once the rows of what was stored before this table existed are built (at the
-- first start, searchplans.build): 1 while the text of its docs is still to be read, 2
-- when that is done too; a database holding nothing yet has nothing to build (2)
CREATE TABLE search_built (built INTEGER NOT NULL);
INSERT INTO search_built (built) SELECT 2 WHERE NOT EXISTS (SELECT 1 FROM versions)
    AND NOT EXISTS (SELECT 1 FROM mirror_projects);
