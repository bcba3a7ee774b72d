-- Sign-in attempts by subject (a hash of organization and username, whether or not that user
-- exists), reserved as pending before the password is checked and settled after: failures stay,
-- a success clears the subject. The lockout counts them atomically and treats unknown
-- usernames like known ones.
DROP TABLE login_failures;
CREATE TABLE login_attempts (
    id      UUID PRIMARY KEY,
    subject BYTEA NOT NULL,
    at      TIMESTAMPTZ NOT NULL,
    pending BOOLEAN NOT NULL
);
CREATE INDEX login_attempts_subject_at ON login_attempts (subject, at);
-- Old attempts are pruned a few at a time by the reservations themselves.
CREATE INDEX login_attempts_at ON login_attempts (at);
