-- Recurring events: one row per schedule. The scheduler fires each occurrence once across
-- all replicas (row lock with SKIP LOCKED, fired and advanced in one transaction) and, after
-- downtime, fires only the latest missed occurrence.
CREATE TABLE schedules (
  id          text        PRIMARY KEY,     -- "event:<event_id>" for submitted events, "builtin:<type>"
  cron        text        NOT NULL,        -- 5-field cron expression
  timezone    text        NOT NULL DEFAULT 'UTC',
  event       jsonb       NOT NULL,        -- the event published at each occurrence (no schedule)
  enabled     boolean     NOT NULL DEFAULT true,
  next_due    timestamptz,                 -- the next occurrence not fired yet
  last_fired  timestamptz,                 -- the occurrence fired last
  fired_count bigint      NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due_idx ON schedules (next_due) WHERE enabled;

-- Built-in schedules (x-herald "schedule" of an event type: stats.monthly, bookmark.reminder)
-- are inserted by the scheduler when it starts, with next_due computed from its clock.
