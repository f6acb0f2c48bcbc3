-- scribe-bridge ledger, schema 3: fair claiming across workers (src/ledger/deliveries.ts claimDue).

-- Which workers claimed at which destination recently. A claim under a concurrency limit records its owner here
-- and takes at most a fair share of the limit among the active owners (those holding a live lease there or seen
-- claiming there in the last few seconds). Without this, a worker that records a
-- round and claims the next in one transaction would re-take every slot it frees, and other workers, which
-- claim when the slots are already full, would never get any. No PHI: worker ids and times only.
create table if not exists claim_owners (
  destination text        not null,
  owner       text        not null,
  seen_at     timestamptz not null,
  primary key (destination, owner)
);
