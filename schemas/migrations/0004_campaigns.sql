-- Campaigns (newsletters): what a manager sends to a segment, when, and where it stands.
-- state: draft → scheduled (start_at in the future) → running → completed, with paused
-- (from running or scheduled) and cancelled (from any state but completed). The scheduler
-- launches due runs; plan, delivery and the scheduler's hold release read the state (mirrored
-- in Redis) to pause or cancel work in flight. version increments on every change (optimistic
-- concurrency for the admin API's If-Match).
CREATE TABLE campaigns (
  id             text        PRIMARY KEY,
  name           text        NOT NULL CHECK (name <> ''),
  event_type     text        NOT NULL,             -- the event type whose templates render it
  segment        jsonb       NOT NULL DEFAULT '{}', -- {tags?, timezones?, locales?} or {users: [...]}
  channels       text[]      NOT NULL DEFAULT '{}', -- empty: the type's channels
  priority       text        NOT NULL DEFAULT 'low' CHECK (priority IN ('high', 'normal', 'low')),
  deliver_window jsonb,                            -- {from, to} in each recipient's local time
  content        text[]      NOT NULL DEFAULT '{}', -- movie ids the template refers to
  data           jsonb       NOT NULL DEFAULT '{}', -- template variables
  start_at       timestamptz,
  end_at         timestamptz,
  cron           text,                             -- recurring campaigns: one run per occurrence
  timezone       text        NOT NULL DEFAULT 'UTC',
  state          text        NOT NULL DEFAULT 'draft'
                 CHECK (state IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
  paused_from    text,                             -- the state a pause interrupted
  next_run_at    timestamptz,                      -- when the scheduler launches the next run
  runs           integer     NOT NULL DEFAULT 0,
  version        integer     NOT NULL DEFAULT 1,
  created_by     text        NOT NULL DEFAULT '',
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  deleted_at     timestamptz,                      -- deleted: gone from the API, its state still read by the stages
  CHECK (end_at IS NULL OR start_at IS NULL OR end_at > start_at)
);
CREATE INDEX campaigns_due_idx ON campaigns (next_run_at) WHERE state IN ('scheduled', 'running');
CREATE INDEX campaigns_created_idx ON campaigns (created_at DESC);

-- One row per launched run (one for a one-off campaign, one per occurrence of a cron),
-- written in the transaction that advances the campaign and published after it committed
-- (an outbox: the scheduler publishes runs left unpublished by a crash). The
-- event published for it (kept in `event`) has event_id "campaign.<id>.<run>"; plan records
-- how many recipients its fan-out produced (from the fan-out checkpoint, so a page produced
-- twice counts once). A fan-out that found its campaign paused stops and sets fanout_paused;
-- after resume the scheduler publishes the event again and the fan-out continues from its
-- checkpoint.
CREATE TABLE campaign_runs (
  campaign_id     text        NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
  run             integer     NOT NULL,
  event_id        text        NOT NULL UNIQUE,
  event           jsonb       NOT NULL,
  started_at      timestamptz NOT NULL,
  fanned_out      bigint      NOT NULL DEFAULT 0,
  fanout_complete boolean     NOT NULL DEFAULT false,
  fanout_paused   boolean     NOT NULL DEFAULT false,
  published       boolean     NOT NULL DEFAULT false,  -- the event reached the broker (outbox)
  PRIMARY KEY (campaign_id, run)
);
CREATE INDEX campaign_runs_unpublished_idx ON campaign_runs (campaign_id) WHERE NOT published;

-- Herald-owned user preferences: each set field overrides what auth says of the user.
CREATE TABLE preferences (
  user_id     text        PRIMARY KEY,
  channels    text[],                 -- preference order; NULL: auth's
  quiet_hours jsonb,                  -- {from, to}, or {"off": true}; NULL: auth's
  locale      text CHECK (locale IS NULL OR locale IN ('ru', 'en')),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Opt-outs per category (marketing, social, ...): from the preferences API or an unsubscribe
-- link. Enrichment suppresses a notification whose type's category the user opted out of
-- (critical types excepted).
CREATE TABLE opt_outs (
  user_id  text        NOT NULL,
  category text        NOT NULL,
  source   text        NOT NULL,      -- 'unsubscribe' | 'api'
  at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, category)
);

-- Pre-aggregated delivery statistics, maintained by the ledger in the same transaction as
-- the rows they summarise: a row's move from one status to another decrements the old count
-- and increments the new one, so the counts always equal the ledger's current statuses.
-- campaign_id '' = not part of a campaign.
CREATE TABLE delivery_counts (
  campaign_id text   NOT NULL DEFAULT '',
  channel     text   NOT NULL,
  provider    text   NOT NULL DEFAULT '',
  status      text   NOT NULL,
  n           bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, channel, provider, status)
);

-- Delivery latency (event created_dt → sent), a histogram per campaign, channel and priority.
-- bucket b holds latencies in [LatencyBucketLow(b), LatencyBucketLow(b+1)) milliseconds.
CREATE TABLE delivery_latency (
  campaign_id text     NOT NULL DEFAULT '',
  channel     text     NOT NULL,
  priority    text     NOT NULL,
  bucket      smallint NOT NULL,
  n           bigint   NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, channel, priority, bucket)
);

-- Transitions per minute, for charts over time: how many rows entered each status.
CREATE TABLE delivery_timeline (
  minute      timestamptz NOT NULL,
  campaign_id text        NOT NULL DEFAULT '',
  channel     text        NOT NULL,
  status      text        NOT NULL,
  n           bigint      NOT NULL DEFAULT 0,
  PRIMARY KEY (minute, campaign_id, channel, status)
);
CREATE INDEX delivery_timeline_campaign_idx ON delivery_timeline (campaign_id, minute);

-- Top failure reasons: rows that ended failed, counted by reason (first 200 characters).
CREATE TABLE delivery_failures (
  campaign_id text   NOT NULL DEFAULT '',
  channel     text   NOT NULL,
  reason      text   NOT NULL,
  n           bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, channel, reason)
);

-- API keys for the admin API: only a SHA-256 of the token is stored.
CREATE TABLE api_keys (
  token_sha256 text        PRIMARY KEY,
  name         text        NOT NULL,
  scope        text        NOT NULL CHECK (scope IN ('read', 'write')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz
);
