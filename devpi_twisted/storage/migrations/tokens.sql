-- API tokens (devpi-tokens' format, model/apitokens.py): one row per token of a user.
-- value: JSON {"salt", "created", "restrictions"}; the salt alone does not make the
-- signing key (that needs the server secret). first_used/last_used are not in the
-- changelog: each node records uses it saw (last use at most once a minute).
CREATE TABLE tokens (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    value TEXT NOT NULL,
    serial INTEGER NOT NULL,
    first_used DOUBLE PRECISION,
    last_used DOUBLE PRECISION,
    PRIMARY KEY (owner, id)
);
