package storage

import "errors"

// Sentinel errors. Every error returned by this package wraps one of these
// (or a context error) with %w, so callers test them with errors.Is.
var (
	// ErrClosed is returned by every call made after Close started.
	ErrClosed = errors.New("storage: store closed")
	// ErrNotFound is returned when a session, queue entry, packet ID or
	// retained topic does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrExists is returned by CreateUser when the user already exists.
	ErrExists = errors.New("storage: already exists")
	// ErrQueueFull is returned by Enqueue when a session's queue is at a
	// limit under the refuse-new policy (MQTT 5 reason 0x97 quota exceeded).
	ErrQueueFull = errors.New("storage: queue full")
	// ErrCorrupt is returned when a stored or supplied record cannot be
	// decoded.
	ErrCorrupt = errors.New("storage: corrupt record")
	// ErrUnsupportedVersion is returned when a record or the database was
	// written by a newer format version than this code knows.
	ErrUnsupportedVersion = errors.New("storage: unsupported format version")
	// ErrInvalid is returned for arguments that can never succeed (empty
	// session ID, QoS above 2, a client ID over 65,535 bytes, bad options).
	ErrInvalid = errors.New("storage: invalid argument")
	// ErrTooLarge is returned when one write does not fit in one Badger
	// transaction (about 15% of MemTableSize).
	ErrTooLarge = errors.New("storage: write too large")
	// ErrCommit is returned to every caller of a batch whose Badger commit
	// failed (disk full, I/O error). Nothing of that batch is visible and
	// no sequence number is consumed.
	ErrCommit = errors.New("storage: commit failed")
	// ErrFailed is returned once an fsync has failed: after a failed fsync
	// the page cache cannot be trusted, so the store refuses further writes
	// until it is reopened (reads still work).
	ErrFailed = errors.New("storage: store failed, reopen required")
)
