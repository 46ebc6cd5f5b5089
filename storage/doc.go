// Package storage is the node's durable store, on one Badger database:
// MQTT sessions, per-session offline queues with inflight markers,
// retained messages, users with the client IDs they own, groups, block
// lists, user settings and records of sent messages. It keeps the product promise "a message acknowledged
// to the sender is safe and will reach the recipient": a write is
// answered only once it is durable (fsynced under DurabilitySync).
//
// It does not import mochi-mqtt: hooks translate mochi's packets into
// Message and Session, whose encodings are this package's own.
//
// # Group commit
//
// Every write is an operation handed to one commit goroutine through a
// bounded channel. The goroutine drains whatever is waiting (up to
// Options.MaxBatchOps) into one Badger transaction, commits it, fsyncs
// once, publishes the new queue watermarks and answers every caller. While
// it fsyncs, new operations queue up and form the next batch, so N
// concurrent writers cost about one fsync per batch instead of N. Blocking
// calls (Enqueue, Ack, ...) wait for their answer; the Async variants take
// a callback so a hook can hold a PUBACK without blocking a reader.
//
// A failed Badger commit fails every operation of that batch (ErrCommit)
// and rolls back the in-memory counters, so no sequence number is consumed
// and no hole is left. A failed fsync cannot be rolled back safely (the
// page cache may hold what the disk does not), so the store enters a
// failed state: further writes return ErrFailed until it is reopened.
//
// # Queues and watermarks
//
// Each session queue has counters (next seq, head bound, count, bytes)
// persisted under c|sid in the same transaction as the entries, and loaded
// lazily: memory holds a few words per session in use, never per message,
// and Open scans nothing. Sequence numbers are assigned by the commit
// goroutine, so they follow commit order. Badger shows a commit to readers
// before the fsync; readers therefore see only entries up to the
// session's committed watermark (LastSeq), published after the fsync: a
// reader never sees seq N+1 while N is not durable.
//
// # Key layout
//
// A sid below is a session (client) ID as 2-byte big-endian length + bytes,
// so one session's prefix never contains another's; so are the user of a
// b key and the sender of an m key. seq is 8 bytes
// big-endian, so keys sort in queue order.
//
//	v                 format version (1 byte)
//	s|sid             Session (versioned binary)
//	c|sid             queue counters: version, next, head, count, bytes
//	q|sid|seq         queued Message (versioned binary, one copy per session)
//	i|sid|seq         inflight marker: packet ID (2 bytes), sent time
//	p|sid|packetID    seq of the entry sent with that packet ID
//	r|topic           retained Message
//	u|u|name          User (bcrypt password hash, admin flag)
//	u|o|clientID      owner of a client ID (the first user to connect with it)
//	u|n|user|clientID index of a user's client IDs, to release them on delete
//	u|s|name          Settings of a user (privacy flags; JWT users have no User)
//	g|name            Group (title, owner, sorted members)
//	b|user|blocked    block: user has blocked blocked (empty value)
//	m|sender|id       topic a sender's message id went to, for read receipts (Badger TTL)
//
// See docs/storage.md for the choices and the measured figures.
package storage
