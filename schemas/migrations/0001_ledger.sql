-- The delivery ledger: one row per (notification_id, channel), moved forward by the ledger
-- stage from notify.status.v1. status_rank orders statuses so a replayed or out-of-order
-- status never moves a row backwards.
CREATE TABLE deliveries (
  notification_id     text        NOT NULL,
  channel             text        NOT NULL,
  event_id            text        NOT NULL,
  event_type          text        NOT NULL,
  campaign_id         text,
  user_id             text        NOT NULL,
  priority            text        NOT NULL,
  status              text        NOT NULL,
  status_rank         smallint    NOT NULL,
  reason              text,
  provider            text,
  provider_message_id text,
  attempt             integer     NOT NULL DEFAULT 0,
  event_created_at    timestamptz NOT NULL,
  first_seen_at       timestamptz NOT NULL,
  updated_at          timestamptz NOT NULL,
  sent_at             timestamptz,
  PRIMARY KEY (notification_id, channel)
);
CREATE INDEX deliveries_event_idx ON deliveries (event_id);
CREATE INDEX deliveries_campaign_idx ON deliveries (campaign_id, status) WHERE campaign_id IS NOT NULL;
CREATE INDEX deliveries_user_idx ON deliveries (user_id);

-- Status history: every distinct transition once (a replayed status is a no-op).
CREATE TABLE delivery_events (
  notification_id text        NOT NULL,
  channel         text        NOT NULL,
  status          text        NOT NULL,
  attempt         integer     NOT NULL,
  reason          text,
  provider        text,
  at              timestamptz NOT NULL,
  PRIMARY KEY (notification_id, channel, status, attempt)
);
