package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Durability says when a write is fsynced relative to the moment its call
// returns (or its callback runs).
type Durability string

const (
	// DurabilitySync fsyncs every group commit before any of its callers
	// is answered. This is the default: an acknowledged write survives a
	// power cut.
	DurabilitySync Durability = "sync"
	// DurabilityInterval answers callers once the batch is in Badger's
	// write-ahead log (process crash safe) and fsyncs every SyncInterval.
	// A power cut or kernel crash loses at most the writes of the last
	// SyncInterval.
	DurabilityInterval Durability = "interval"
)

// Policy says what Enqueue does when a session's queue is at a limit.
type Policy string

const (
	// PolicyRefuseNew refuses the new message for that session with
	// ErrQueueFull. It is the default because it never loses a message
	// that was already accepted: the sender learns (MQTT 5 reason 0x97).
	PolicyRefuseNew Policy = "refuse-new"
	// PolicyDropOldest deletes the oldest queued messages until the new
	// one fits. Every drop is counted in Stats.DroppedOldest and logged.
	PolicyDropOldest Policy = "drop-oldest"
)

// QueueLimits bound each session's offline queue. In Options, a zero
// MaxMessages or MaxBytes gets the default and a negative one means no
// limit; a zero MaxAge means no age limit.
type QueueLimits struct {
	// MaxMessages is the most messages one session may have queued.
	MaxMessages int
	// MaxBytes is the most encoded bytes one session may have queued.
	MaxBytes int64
	// MaxAge drops messages older than this (by Message.Created) when they
	// are read or reach the head of the queue at enqueue time.
	MaxAge time.Duration
	// Policy applies when MaxMessages or MaxBytes would be exceeded.
	Policy Policy
}

// Options configure a Store. Zero fields get the defaults listed on each
// field, applied in Open.
type Options struct {
	// Dir is the Badger directory. Required.
	Dir string
	// Logger receives the store's logs with component=storage; Badger's
	// own logs are bridged into it (Badger INFO becomes Debug).
	Logger zerolog.Logger
	// Durability is DurabilitySync (default) or DurabilityInterval.
	Durability Durability
	// SyncInterval is the fsync period under DurabilityInterval
	// (default 100ms): the loss window on power failure.
	SyncInterval time.Duration
	// GCInterval is the period of Badger value-log GC (default 5m; a
	// negative value disables it).
	GCInterval time.Duration
	// GCDiscardRatio is passed to RunValueLogGC (default 0.5).
	GCDiscardRatio float64

	// MemTableSize is Badger's memtable size (default 16 MiB). One
	// transaction is limited to 15% of it (2.4 MiB by default).
	MemTableSize int64
	// NumMemtables is how many memtables Badger keeps (default 2).
	NumMemtables int
	// BlockCacheSize is Badger's block cache (default 0: tables are not
	// compressed, so blocks are read from the memory-mapped files).
	BlockCacheSize int64
	// IndexCacheSize is Badger's index and bloom filter cache (default
	// 8 MiB); without it every table's index stays in RAM.
	IndexCacheSize int64
	// ValueLogFileSize is the size of one value-log file (default 64 MiB).
	ValueLogFileSize int64
	// ValueThreshold is the size from which values go to the value log
	// instead of the LSM tree (default 64 bytes: message bodies go to the
	// value log, so the LSM tree holds only keys and pointers and its
	// compactions stay small; with 1M queued messages this cut the
	// process's anonymous memory from 585 MB to about 200 MB).
	ValueThreshold int64

	// MaxBatchOps is the most operations in one group commit (default 1024).
	MaxBatchOps int
	// RequestQueue is the capacity of the bounded channel feeding the
	// commit goroutine (default 4096); a full channel blocks the caller.
	RequestQueue int

	// Queue limits every session's offline queue (default 100,000
	// messages, 256 MiB, no age limit, PolicyRefuseNew).
	Queue QueueLimits
	// MemoryQueueMaxBytes further bounds a volatile queue, whose entries
	// are held in memory (memqueue.go); Queue.Policy applies when it is
	// reached. 0: Queue.MaxBytes alone.
	MemoryQueueMaxBytes int64

	// VisibleBeforeSync makes new queue entries readable as soon as their
	// batch is committed to Badger, before its fsync under DurabilitySync;
	// the callers are still answered only after the fsync. A reader may
	// then deliver a message that a crash un-writes: its writer was never
	// told it was stored, so it sends it again, and the reader gets it a
	// second time. The hub accepts that at QoS 1 to take the fsync out of
	// the delivery latency.
	VisibleBeforeSync bool
	// OnVisible, when set, is called by the commit goroutine with the
	// sessions whose queues changed, once the change is visible to Read.
	// It must return quickly and must not call the Store.
	OnVisible func(sessions []string)
	// OnAppended, when set, is called by the commit goroutine for each
	// message appended to a queue, with its sequence number, as soon as it
	// is visible and before OnVisible: a reader that is caught up can take
	// it from here instead of reading it back. m is shared by every queue
	// it went to and must not be modified; size is the entry's size as the
	// queue counts it (Entry.Size). It must return quickly and must not
	// call the Store.
	OnAppended func(session string, seq uint64, m *Message, size int64)

	// Now returns the current time (default time.Now); tests replace it to
	// drive expiry without sleeping.
	Now func() time.Time
}

// Defaults for Options, applied in Open.
const (
	DefaultSyncInterval     = 100 * time.Millisecond
	DefaultGCInterval       = 5 * time.Minute
	DefaultGCDiscardRatio   = 0.5
	DefaultMemTableSize     = 16 << 20
	DefaultNumMemtables     = 2
	DefaultIndexCacheSize   = 8 << 20
	DefaultValueLogFileSize = 64 << 20
	DefaultValueThreshold   = 64
	DefaultMaxBatchOps      = 1024
	DefaultRequestQueue     = 4096
	DefaultMaxMessages      = 100_000
	DefaultMaxBytes         = 256 << 20
)

func (o *Options) applyDefaults() {
	if o.Durability == "" {
		o.Durability = DurabilitySync
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.GCInterval == 0 {
		o.GCInterval = DefaultGCInterval
	}
	if o.GCDiscardRatio == 0 {
		o.GCDiscardRatio = DefaultGCDiscardRatio
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.NumMemtables == 0 {
		o.NumMemtables = DefaultNumMemtables
	}
	if o.IndexCacheSize == 0 {
		o.IndexCacheSize = DefaultIndexCacheSize
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = DefaultValueLogFileSize
	}
	if o.ValueThreshold == 0 {
		o.ValueThreshold = DefaultValueThreshold
	}
	if o.MaxBatchOps == 0 {
		o.MaxBatchOps = DefaultMaxBatchOps
	}
	if o.RequestQueue == 0 {
		o.RequestQueue = DefaultRequestQueue
	}
	if o.Queue.MaxMessages == 0 {
		o.Queue.MaxMessages = DefaultMaxMessages
	}
	if o.Queue.MaxBytes == 0 {
		o.Queue.MaxBytes = DefaultMaxBytes
	}
	if o.Queue.Policy == "" {
		o.Queue.Policy = PolicyRefuseNew
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every problem with the options at once. Open calls it
// after applying defaults.
func (o Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, fmt.Errorf("%w: Dir is required", ErrInvalid))
	}
	switch o.Durability {
	case "", DurabilitySync, DurabilityInterval:
	default:
		errs = append(errs, fmt.Errorf("%w: durability %q (want sync or interval)", ErrInvalid, o.Durability))
	}
	switch o.Queue.Policy {
	case "", PolicyRefuseNew, PolicyDropOldest:
	default:
		errs = append(errs, fmt.Errorf("%w: queue policy %q (want drop-oldest or refuse-new)", ErrInvalid, o.Queue.Policy))
	}
	if o.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: negative SyncInterval", ErrInvalid))
	}
	if o.MemTableSize < 0 || o.BlockCacheSize < 0 || o.IndexCacheSize < 0 || o.ValueLogFileSize < 0 || o.ValueThreshold < 0 {
		errs = append(errs, fmt.Errorf("%w: negative cache or table size", ErrInvalid))
	}
	if o.Queue.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("%w: negative queue MaxAge", ErrInvalid))
	}
	if o.MaxBatchOps < 0 || o.RequestQueue < 0 || o.NumMemtables < 0 {
		errs = append(errs, fmt.Errorf("%w: negative batch or queue size", ErrInvalid))
	}
	return errors.Join(errs...)
}
