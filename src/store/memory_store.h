#pragma once
// A fake Store kept in memory, for tests: the controller's deterministic
// simulation and API unit tests, where SQLite's JSON encode/decode on every read
// dominates the run time. Nothing is durable: the data dies with the object.
//
// Same contract as the SQLite store (store.h, sqlite_store.cc), checked by
// store_conformance_test.cc:
//  - Thread-safe: every call holds one mutex.
//  - `seq` is global and strictly increasing from 1, `job_seq` per job from 1;
//    dedup keys are global; a rejected write leaves nothing behind.
//  - Transactions are all-or-nothing (CreateJob, CommitTransition, UpdateTags,
//    UpdateTuningTags, AppendMetricPoints).
//  - GetJob by id, else by name. CommitTransition saves the job but keeps its
//    stored tags (they change through UpdateTags only), upserts its instances and
//    marks the folded events applied with their status_after/secondary_after.
//    EventsAfter stops at the first unapplied event; JobEventsAfter returns applied
//    events only.
//  - ListJobs: the same filters, orders, limits and pagination (page tokens are
//    opaque); name, created time and kind are those the job was created with, as
//    SQLite's indexed columns; status and team are those last saved.
//  - Tuning jobs, access keys, metric points and secrets as SQLite keeps them.
//
// Jobs are kept as Job structs and events as Event structs (copies in and out),
// so the hot paths (GetJob, UnappliedEvents, AppendEvent, CommitTransition) do no
// JSON round trip. One difference follows: SQLite re-validates a stored job's spec
// on every read (ParseSpec) and fails the read with kInternal when it does not
// validate; this fake returns the job as written.
#include <memory>

#include "store/store.h"

namespace kiln {

std::unique_ptr<Store> NewMemoryStore();

}  // namespace kiln
