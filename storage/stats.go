package storage

import "sync/atomic"

// Stats are the store's counters, updated atomically and never reset; a
// metrics hook reads them with Load. A counter moves only once the write
// it counts has committed.
type Stats struct {
	// Enqueued counts messages appended to a session queue (one per
	// session for a fan-out Enqueue).
	Enqueued atomic.Uint64
	// Acked counts queue entries removed by Ack or AckPacket.
	Acked atomic.Uint64
	// DroppedOldest counts entries deleted by PolicyDropOldest to make room.
	DroppedOldest atomic.Uint64
	// RefusedFull counts messages refused with ErrQueueFull.
	RefusedFull atomic.Uint64
	// Expired counts entries deleted because their MQTT message expiry
	// deadline had passed.
	Expired atomic.Uint64
	// AgedOut counts entries deleted because they were older than
	// QueueLimits.MaxAge.
	AgedOut atomic.Uint64
	// Batches counts group commits; Ops counts the operations they carried,
	// so Ops/Batches is the average batch size.
	Batches atomic.Uint64
	Ops     atomic.Uint64
	// Syncs counts fsyncs (one per batch under DurabilitySync).
	Syncs atomic.Uint64
	// CommitErrors counts failed Badger commits and fsyncs.
	CommitErrors atomic.Uint64
	// GCRuns counts value-log GC passes that rewrote a file.
	GCRuns atomic.Uint64
}
