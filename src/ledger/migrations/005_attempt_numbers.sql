-- 005: attempt numbers that never repeat for a delivery.
--
-- deliveries.attempts counts the attempts of the current round against the destination's retry budget, and an
-- operator's replay starts a new round at 0. Attempt rows used to take their number from it, so after a replay
-- a delivery had two attempts numbered 1 (and the trace, which keys attempts by number, merged them).
-- attempt_seq is the number of the delivery's last attempt, raised under the delivery's row lock with every
-- recorded attempt and never reset; existing deliveries start from the attempts they already have.
alter table deliveries add column if not exists attempt_seq integer not null default 0;

update deliveries d set attempt_seq = a.n
from (select delivery_id, count(*)::int as n from delivery_attempts group by delivery_id) a
where a.delivery_id = d.id and d.attempt_seq < a.n;
