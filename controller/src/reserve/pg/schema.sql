-- Shared-pool reservations (RECIPES.md §13), in a schema of their own
-- beside the results store's tables. Applied by every controller that
-- opens the pool (`CREATE ... IF NOT EXISTS`, under an advisory lock).

CREATE SCHEMA IF NOT EXISTS lnst_pool;

-- A pool machine, registered by `lnst-ctl pool sync`. `spec` is the pool
-- file as JSON (address, params, NICs, other keys): a run checks that its
-- pool file still says the same.
CREATE TABLE IF NOT EXISTS lnst_pool.machine (
    id          text PRIMARY KEY,
    address     text NOT NULL UNIQUE,
    spec        text NOT NULL,
    -- dirty: its last holder's lease expired; not handed out until its
    -- agent reports an empty undo journal.
    state       text NOT NULL DEFAULT 'healthy' CHECK (state IN ('healthy', 'dirty')),
    dirty_since timestamptz,
    registered  timestamptz NOT NULL DEFAULT now()
);

-- Fencing tokens, drawn at grant time: a later grant has a larger token,
-- whatever the order of arrival, so an agent can refuse a controller
-- whose grant is older than one it has served since.
CREATE SEQUENCE IF NOT EXISTS lnst_pool.fence;

-- A request for machines: a run's (its controller refreshes the lease)
-- or a person's (`lnst-ctl reserve --for`, the lease is the time asked).
CREATE TABLE IF NOT EXISTS lnst_pool.reservation (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('run', 'person')),
    who         text NOT NULL,
    what        text NOT NULL,
    priority    integer NOT NULL DEFAULT 0,
    -- JSON: {"requirements": {...}} (mapped onto free machines when
    -- granted) or {"machines": ["m1", ..]}.
    want        text NOT NULL,
    state       text NOT NULL CHECK (state IN ('waiting', 'granted', 'released', 'expired', 'abandoned')),
    machines    text[],
    mapping     text,
    fence       bigint UNIQUE,
    lease_secs  double precision NOT NULL,
    created     timestamptz NOT NULL DEFAULT clock_timestamp(),
    granted     timestamptz,
    ended       timestamptz,
    lease_until timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS reservation_queue
    ON lnst_pool.reservation (priority DESC, id) WHERE state = 'waiting';
CREATE INDEX IF NOT EXISTS reservation_live
    ON lnst_pool.reservation (lease_until) WHERE state IN ('waiting', 'granted');

-- Who holds a machine. The primary key is the guarantee: a machine has at
-- most one holder, so double booking cannot be written, whatever a
-- controller's code does.
CREATE TABLE IF NOT EXISTS lnst_pool.hold (
    machine     text PRIMARY KEY REFERENCES lnst_pool.machine (id) ON DELETE CASCADE,
    reservation bigint NOT NULL REFERENCES lnst_pool.reservation (id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS hold_reservation ON lnst_pool.hold (reservation);
