package storage

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/rs/zerolog"
)

// Store is the node's durable store: one Badger database holding sessions,
// offline queues and retained messages. All writes go through one commit
// goroutine that group-commits them (see commit.go); reads go straight to
// Badger. A Store is safe for concurrent use.
type Store struct {
	opts    Options
	log     zerolog.Logger
	dropLog zerolog.Logger // sampled: drops can come in floods
	db      *badger.DB
	stats   Stats

	reqs       chan op
	writerDone chan struct{}
	stop       chan struct{}
	bg         sync.WaitGroup // gc and sync loops

	// lmu guards closing and active: Close waits for calls in progress
	// (active) before closing the request channel and the database, so no
	// call ever touches a closed Badger.
	lmu       sync.Mutex
	idle      *sync.Cond
	closing   bool
	active    int
	closeOnce sync.Once
	closeErr  error

	failed atomic.Pointer[error]

	// faults inject commit and fsync errors in tests; nil in production.
	faults struct{ commit, sync atomic.Pointer[func() error] }

	// mu guards queues, the per-session counters (a few words each, never
	// per message; entries are loaded lazily from their c| key), and
	// volatile.
	mu       sync.Mutex
	queues   map[string]*qstate
	volatile map[string]struct{} // sessions whose queues need no fsync (volatile.go)
}

// Open opens (or creates) the store in opts.Dir, applying defaults to the
// zero fields of opts. It does not read queued messages: start-up cost does
// not grow with the number of queued messages (Badger replays at most one
// memtable of write-ahead log).
func Open(opts Options) (*Store, error) {
	opts.applyDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", opts.Dir, err)
	}
	log := opts.Logger.With().Str("component", "storage").Logger()
	bopts := badger.DefaultOptions(opts.Dir).
		WithLogger(badgerLogger{log.With().Str("lib", "badger").Logger()}).
		// The commit goroutine fsyncs once per batch itself (or the sync
		// loop does under DurabilityInterval); SyncWrites would fsync every
		// transaction of a split batch.
		WithSyncWrites(false).
		// One writer: Badger's conflict detection would only cost memory.
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(opts.NumMemtables).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithNumCompactors(2).
		// Tables hold keys and value pointers only (ValueThreshold), which
		// compress little; compressing them cost compaction its largest
		// buffers (48 of 160 MB of heap after queueing 3M messages) and
		// required a block cache. Uncompressed blocks are read from the
		// memory-mapped tables, cached by the kernel. Tables written
		// compressed before stay readable (their compression is recorded).
		WithCompression(options.None).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithIndexCacheSize(opts.IndexCacheSize).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithValueThreshold(opts.ValueThreshold).
		WithNumGoroutines(2)
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("storage: open badger in %s: %w", opts.Dir, err)
	}
	if err := checkFormat(db); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	s := &Store{
		opts:       opts,
		log:        log,
		dropLog:    log.Sample(&zerolog.BurstSampler{Burst: 10, Period: 10 * time.Second}),
		db:         db,
		reqs:       make(chan op, opts.RequestQueue),
		writerDone: make(chan struct{}),
		stop:       make(chan struct{}),
		queues:     make(map[string]*qstate),
		volatile:   make(map[string]struct{}),
	}
	s.idle = sync.NewCond(&s.lmu)
	go s.writer()
	if opts.GCInterval > 0 {
		s.bg.Add(1)
		go s.gcLoop()
	}
	if opts.Durability == DurabilityInterval {
		s.bg.Add(1)
		go s.syncLoop()
	}
	log.Debug().Str("dir", opts.Dir).Str("durability", string(opts.Durability)).Msg("store opened")
	return s, nil
}

// checkFormat records the layout version in a new database and refuses a
// database written by a newer one.
func checkFormat(db *badger.DB) error {
	return db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set(metaKey, []byte{formatVersion})
		}
		if err != nil {
			return fmt.Errorf("storage: read format version: %w", err)
		}
		return item.Value(func(v []byte) error {
			if len(v) != 1 || v[0] > formatVersion {
				return fmt.Errorf("%w: database format %v", ErrUnsupportedVersion, v)
			}
			return nil
		})
	})
}

// Close stops accepting calls, waits for calls in progress, commits what
// was queued, stops every goroutine the store started, fsyncs and closes
// Badger. It is idempotent: later calls return nil.
func (s *Store) Close() error {
	err := ErrClosed
	s.closeOnce.Do(func() {
		s.lmu.Lock()
		s.closing = true
		for s.active > 0 {
			s.idle.Wait()
		}
		s.lmu.Unlock()
		// No caller is inside now and none can enter: closing the channel
		// is safe, and the writer drains what is left before it exits.
		close(s.reqs)
		<-s.writerDone
		close(s.stop)
		s.bg.Wait()
		var errs []error
		if s.failed.Load() == nil {
			if err := s.db.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("storage: final sync: %w", err))
			}
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage: close badger: %w", err))
		}
		s.closeErr = errors.Join(errs...)
		s.log.Debug().Err(s.closeErr).Msg("store closed")
		err = s.closeErr
	})
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// Stats returns the store's live counters.
func (s *Store) Stats() *Stats { return &s.stats }

// enter registers a call in progress; it fails once Close has started.
func (s *Store) enter() error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closing {
		return ErrClosed
	}
	s.active++
	return nil
}

func (s *Store) leave() {
	s.lmu.Lock()
	s.active--
	if s.active == 0 && s.closing {
		s.idle.Broadcast()
	}
	s.lmu.Unlock()
}

// setFailed records the first fsync failure; from then on writes return
// ErrFailed.
func (s *Store) setFailed(err error) {
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error().Err(err).Msg("fsync failed: store refuses writes until reopened")
	}
}

func (s *Store) failedErr() error {
	if p := s.failed.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrFailed, *p)
	}
	return nil
}

// submit hands o to the commit goroutine. It blocks while the bounded
// request channel is full. On error o.finish is not called.
func (s *Store) submit(o op) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := s.failedErr(); err != nil {
		return err
	}
	s.reqs <- o
	return nil
}

// view runs fn in a Badger read transaction, refusing once Close started.
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.db.View(fn)
}
