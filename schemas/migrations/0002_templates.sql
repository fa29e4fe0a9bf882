-- Notification templates, versioned: one key per (event_type, channel, locale), and every save
-- appends the next version, so history is never rewritten. The latest version of a key is the
-- one in use. Deleting a key appends a tombstone version (deleted = true, empty bodies): the
-- key disappears from use, its history stays, and saving it again continues the numbering.
-- created_by is the author ('herald migrate' for the defaults loaded from schemas/templates/,
-- which only ever replaces its own versions, never a manager's).
CREATE TABLE templates (
  event_type text        NOT NULL,
  channel    text        NOT NULL CHECK (channel IN ('email', 'sms', 'telegram', 'push')),
  locale     text        NOT NULL CHECK (locale ~ '^[a-z]{2}(-[A-Z]{2})?$'),
  version    integer     NOT NULL CHECK (version >= 1),
  subject    text        NOT NULL DEFAULT '',
  text_body  text        NOT NULL DEFAULT '',
  html_body  text        NOT NULL DEFAULT '',
  deleted    boolean     NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text        NOT NULL CHECK (created_by <> ''),
  PRIMARY KEY (event_type, channel, locale, version),
  CHECK (deleted OR text_body <> ''),
  CHECK (NOT deleted OR (subject = '' AND text_body = '' AND html_body = ''))
);
