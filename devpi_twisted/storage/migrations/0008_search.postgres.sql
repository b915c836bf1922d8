-- Full-text search (storage/searchrows.py writes the rows, searchplans.py queries them):
-- one row per searchable document, i.e. a version of a stage, a page of its docs, or the
-- name of a project a mirror holds; tsv, kept by PostgreSQL, weighs the name highest,
-- then the title (summary, page title), then the body (description, page text). ``tag``
-- (the stage as one token) is sqlite's; here the stage column is filtered.
CREATE TABLE search_docs (
    id BIGSERIAL PRIMARY KEY,
    stage TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT,
    kind TEXT NOT NULL,
    page TEXT,
    display TEXT NOT NULL,
    name TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    tag TEXT NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A')
        || setweight(to_tsvector('english', title), 'B')
        || setweight(to_tsvector('english', body), 'D')) STORED
);
CREATE INDEX search_docs_key ON search_docs (stage, project, version);
CREATE INDEX search_docs_tsv ON search_docs USING GIN (tsv);
-- one row once the rows of what was stored before this table existed are built (at the
-- first start, searchplans.build): 1 while the text of its docs is still to be read, 2
-- when that is done too; a database holding nothing yet has nothing to build (2)
CREATE TABLE search_built (built INTEGER NOT NULL);
INSERT INTO search_built (built) SELECT 2 WHERE NOT EXISTS (SELECT 1 FROM versions)
    AND NOT EXISTS (SELECT 1 FROM mirror_projects);
