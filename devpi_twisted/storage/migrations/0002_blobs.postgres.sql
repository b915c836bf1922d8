-- Blob bodies in chunks (pgblobs.py). A blob exists when its meta row exists; the
-- row and all its chunks are written in one transaction, so a reader never sees
-- part of a body. Chunks are stored uncompressed (EXTERNAL): package files are
-- compressed already, and substring() of a range then reads only what it needs.
CREATE TABLE blobs (
    key TEXT PRIMARY KEY,
    size BIGINT NOT NULL CHECK (size >= 0),
    sha256 TEXT NOT NULL,
    chunk_size INTEGER NOT NULL CHECK (chunk_size > 0)
);
CREATE TABLE blob_chunks (
    key TEXT NOT NULL REFERENCES blobs (key) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    data BYTEA NOT NULL,
    PRIMARY KEY (key, seq)
);
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
