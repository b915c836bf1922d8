-- When a blob was last downloaded (seconds since the epoch), for removing mirrored
-- files nobody uses (devpi-twisted cleanup). Set when stored, then at most once a day
-- on a download (pgblobs.py touch).
ALTER TABLE blobs ADD COLUMN accessed_at DOUBLE PRECISION NOT NULL
    DEFAULT extract(epoch FROM now());
