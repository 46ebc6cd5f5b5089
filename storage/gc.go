package storage

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcLoop runs Badger value-log GC every GCInterval until Close. Unlike a
// bare `for range ticker.C`, it selects on the stop channel so Close ends
// it (mochi's badger hook leaks exactly that goroutine).
func (s *Store) gcLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.runGC()
		}
	}
}

// runGC rewrites value-log files while at least GCDiscardRatio of one is
// garbage, bounded so one pass cannot run for long.
func (s *Store) runGC() {
	for range 16 {
		select {
		case <-s.stop:
			return
		default:
		}
		err := s.db.RunValueLogGC(s.opts.GCDiscardRatio)
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn().Err(err).Msg("value log gc")
			}
			return
		}
		s.stats.GCRuns.Add(1)
	}
}

// syncLoop fsyncs every SyncInterval under DurabilityInterval. A failed
// fsync puts the store in the failed state (see ErrFailed).
func (s *Store) syncLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.db.Sync(); err != nil {
				s.stats.CommitErrors.Add(1)
				s.setFailed(err)
				continue
			}
			s.stats.Syncs.Add(1)
		}
	}
}
