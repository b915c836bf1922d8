-- Cached upstream pages of mirror indexes, one row per project (value: JSON).
CREATE TABLE mirror_projects (
    owner TEXT NOT NULL,
    idx TEXT NOT NULL,
    project TEXT NOT NULL,
    value TEXT NOT NULL,
    serial INTEGER NOT NULL,
    PRIMARY KEY (owner, idx, project)
);
