package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// op is one write request. The commit goroutine stages many ops into one
// Badger transaction and answers all of them after one fsync: group
// commit, so N concurrent writers cost one fsync, not N.
type op interface {
	// apply stages the op's writes with b.set/b.del and may read through
	// b.get (which sees the writes of earlier ops of the batch). It may
	// run twice when a batch is split, so it recomputes its outputs from
	// scratch. An error fails this op alone.
	apply(b *batch) error
	// finish reports the outcome exactly once, on the commit goroutine,
	// after the fsync (nil) or after the failure.
	finish(err error)
}

type kv struct {
	key, val []byte
	del      bool
	ttl      time.Duration // > 0: Badger expires the entry (setTTL)
}

// undo restores a session's working counters when an op or a chunk fails,
// so a failed commit consumes no sequence number and leaves no hole.
type undo struct {
	st   *qstate
	prev counters
}

type staged struct {
	o       op
	undo    []undo
	memUndo []memUndo
}

// batch is the state of one group commit. A batch is split into several
// Badger transactions (chunks) only when it exceeds Badger's transaction
// limit; each op lies wholly in one chunk, and the batch is fsynced once.
type batch struct {
	s   *Store
	txn *badger.Txn
	now time.Time

	cur        []kv
	curUndo    []undo
	curMemUndo []memUndo // memory queue changes of the current op (memqueue.go)
	curSize    int64
	curCount   int64

	chunk      []staged
	chunkSize  int64
	chunkCount int64
	dirty      map[*qstate]struct{}

	done    []staged
	touched map[*qstate]struct{}
	// durable: some op of the batch must reach the disk before it is
	// answered; a batch of volatile writes only (volatile.go) is not
	// fsynced.
	durable bool
}

// writer is the single commit goroutine: it drains the request channel
// into batches of up to MaxBatchOps ops. Ops that arrive while a batch is
// being fsynced wait in the channel and form the next batch, so batches
// grow with load. It exits when Close closes the channel.
func (s *Store) writer() {
	defer close(s.writerDone)
	ops := make([]op, 0, s.opts.MaxBatchOps)
	for o := range s.reqs {
		ops = append(ops[:0], o)
	drain:
		for len(ops) < s.opts.MaxBatchOps {
			select {
			case o, ok := <-s.reqs:
				if !ok {
					break drain
				}
				ops = append(ops, o)
			default:
				break drain
			}
		}
		s.commitBatch(ops)
		clear(ops)
	}
}

func (s *Store) commitBatch(ops []op) {
	if err := s.failedErr(); err != nil {
		for _, o := range ops {
			o.finish(err)
		}
		return
	}
	b := &batch{
		s:       s,
		txn:     s.db.NewTransaction(true),
		now:     s.opts.Now(),
		dirty:   make(map[*qstate]struct{}),
		touched: make(map[*qstate]struct{}),
	}
	for _, o := range ops {
		b.stage(o)
	}
	b.commitChunk()
	b.txn.Discard()
	if len(b.done) == 0 {
		return
	}
	// Publish: readers see the new counters (and so the new watermark)
	// only now. Badger makes a transaction visible as soon as it commits,
	// before our fsync, so without this watermark a reader could deliver a
	// message that a crash would then un-write. VisibleBeforeSync accepts
	// that (see Options) and publishes before the fsync; the callers are
	// still answered only after it.
	early := s.opts.Durability != DurabilitySync || s.opts.VisibleBeforeSync
	if early {
		s.publish(b)
	}
	if s.opts.Durability == DurabilitySync && b.durable {
		if err := s.sync(); err != nil {
			// The data may be in the page cache but not on disk: nobody is
			// told it is safe, and the store stops taking writes.
			s.stats.CommitErrors.Add(1)
			s.setFailed(err)
			ferr := s.failedErr()
			for _, st := range b.done {
				st.o.finish(ferr)
			}
			return
		}
		s.stats.Syncs.Add(1)
	}
	if !early {
		s.publish(b)
	}
	s.stats.Batches.Add(1)
	s.stats.Ops.Add(uint64(len(b.done)))
	for _, st := range b.done {
		st.o.finish(nil)
	}
}

// appender is an op that appends entries (enqueueOp, enqueueAllOp).
type appender interface {
	appended(fn func(session string, seq uint64, m *Message, size int64))
}

// publish makes a batch's queue changes visible to Read and tells
// Options.OnVisible which sessions changed.
func (s *Store) publish(b *batch) {
	var ids []string
	s.mu.Lock()
	for st := range b.touched {
		st.pub = st.work
		if st.work.forget && s.queues[st.id] == st {
			delete(s.queues, st.id)
		}
		if s.opts.OnVisible != nil {
			ids = append(ids, st.id)
		}
	}
	s.mu.Unlock()
	if s.opts.OnAppended != nil {
		for _, st := range b.done {
			if o, ok := st.o.(appender); ok {
				o.appended(s.opts.OnAppended)
			}
		}
	}
	if len(ids) > 0 {
		s.opts.OnVisible(ids)
	}
}

// stage applies o and adds it to the current chunk, committing the chunk
// first when o would not fit in it.
func (b *batch) stage(o op) {
	for {
		b.cur, b.curUndo, b.curMemUndo, b.curSize, b.curCount = b.cur[:0], nil, nil, 0, 0
		if err := o.apply(b); err != nil {
			b.undoCur()
			o.finish(err)
			return
		}
		maxSize, maxCount := b.limits()
		reserve := int64(len(b.dirty)) * 64 // counter records written at chunk commit
		if b.chunkSize+b.curSize+reserve <= maxSize && b.chunkCount+b.curCount+int64(len(b.dirty)) <= maxCount {
			break
		}
		if len(b.chunk) == 0 {
			b.undoCur()
			o.finish(fmt.Errorf("%w: %d bytes in %d entries", ErrTooLarge, b.curSize, b.curCount))
			return
		}
		// Commit what is staged and run o again against the new state.
		b.undoCur()
		b.commitChunk()
	}
	if v, ok := o.(volatileOp); !ok || !v.volatile() {
		b.durable = true
	}
	b.chunk = append(b.chunk, staged{o: o, undo: b.curUndo, memUndo: b.curMemUndo})
	b.chunkSize += b.curSize
	b.chunkCount += b.curCount
	for _, e := range b.cur {
		var err error
		switch {
		case e.del:
			err = b.txn.Delete(e.key)
		case e.ttl > 0:
			err = b.txn.SetEntry(badger.NewEntry(e.key, e.val).WithTTL(e.ttl))
		default:
			err = b.txn.Set(e.key, e.val)
		}
		if err != nil {
			b.abortChunk(err)
			return
		}
	}
}

func (b *batch) limits() (size, count int64) {
	return b.s.db.MaxBatchSize() * 9 / 10, b.s.db.MaxBatchCount() * 9 / 10
}

func (b *batch) undoCur() {
	for i := len(b.curUndo) - 1; i >= 0; i-- {
		b.curUndo[i].st.work = b.curUndo[i].prev
	}
	b.curUndo = nil
	for i := len(b.curMemUndo) - 1; i >= 0; i-- {
		b.curMemUndo[i].restore()
	}
	b.curMemUndo = nil
}

// commitChunk writes the counters of the sessions the chunk touched and
// commits the chunk's transaction.
func (b *batch) commitChunk() {
	if len(b.chunk) == 0 {
		return
	}
	for st := range b.dirty {
		if st.mem != nil {
			continue // a memory queue keeps its counters in memory too
		}
		var err error
		if st.work.forget {
			err = b.txn.Delete(countersKey(st.id))
		} else {
			err = b.txn.Set(countersKey(st.id), st.work.marshal())
		}
		if err != nil {
			b.abortChunk(err)
			return
		}
	}
	if err := b.s.commitTxn(b.txn); err != nil {
		b.txn = b.s.db.NewTransaction(true)
		b.abortChunk(err)
		return
	}
	b.done = append(b.done, b.chunk...)
	for st := range b.dirty {
		b.touched[st] = struct{}{}
	}
	b.resetChunk()
}

// abortChunk fails every op of the current chunk with ErrCommit and rolls
// their counters back in reverse order.
func (b *batch) abortChunk(cause error) {
	b.txn.Discard()
	b.s.stats.CommitErrors.Add(1)
	b.s.log.Error().Err(cause).Int("ops", len(b.chunk)).Msg("commit failed")
	err := fmt.Errorf("%w: %w", ErrCommit, cause)
	if errors.Is(cause, badger.ErrTxnTooBig) {
		err = fmt.Errorf("%w: %w", ErrTooLarge, cause)
	}
	for i := len(b.chunk) - 1; i >= 0; i-- {
		for j := len(b.chunk[i].undo) - 1; j >= 0; j-- {
			u := b.chunk[i].undo[j]
			u.st.work = u.prev
		}
		for j := len(b.chunk[i].memUndo) - 1; j >= 0; j-- {
			b.chunk[i].memUndo[j].restore()
		}
	}
	for _, st := range b.chunk {
		st.o.finish(err)
	}
	b.resetChunk()
}

func (b *batch) resetChunk() {
	b.chunk, b.chunkSize, b.chunkCount = nil, 0, 0
	clear(b.dirty)
	b.txn = b.s.db.NewTransaction(true)
}

// entrySize estimates Badger's accounting of one entry (key, inline value
// or 12-byte value pointer, 2 meta bytes, 10 bytes of version).
func (b *batch) entrySize(k, v []byte) int64 {
	n := int64(len(v))
	if n >= b.s.opts.ValueThreshold {
		n = 12
	}
	return int64(len(k)) + n + 12
}

func (b *batch) set(k, v []byte) {
	b.cur = append(b.cur, kv{key: k, val: v})
	b.curSize += b.entrySize(k, v)
	b.curCount++
}

// setTTL is set for an entry Badger expires ttl after it is staged, with
// Badger's 1-second granularity (see Badger's Entry.WithTTL).
func (b *batch) setTTL(k, v []byte, ttl time.Duration) {
	b.set(k, v)
	b.cur[len(b.cur)-1].ttl = ttl
}

func (b *batch) del(k []byte) {
	b.cur = append(b.cur, kv{key: k, del: true})
	b.curSize += b.entrySize(k, nil)
	b.curCount++
}

// get reads k as of the staged writes of earlier ops (not the current
// op's own, which are still buffered). It returns ErrKeyNotFound when absent.
func (b *batch) get(k []byte) (*badger.Item, error) {
	return b.txn.Get(k)
}

// queue returns the working counters of a session's queue and records
// them for rollback on the first touch by the current op.
func (b *batch) queue(id string) (*qstate, error) {
	st, err := b.s.state(id)
	if err != nil {
		return nil, err
	}
	for _, u := range b.curUndo {
		if u.st == st {
			return st, nil
		}
	}
	b.curUndo = append(b.curUndo, undo{st: st, prev: st.work})
	b.dirty[st] = struct{}{}
	return st, nil
}

// waiter turns an async op into a blocking call.
type waiter chan error

func (w waiter) wait(ctxDone <-chan struct{}, ctxErr func() error) error {
	select {
	case err := <-w:
		return err
	case <-ctxDone:
		return ctxErr()
	}
}

func (s *Store) commitTxn(txn *badger.Txn) error {
	if f := s.faults.commit.Load(); f != nil {
		if err := (*f)(); err != nil {
			return err
		}
	}
	return txn.Commit()
}

func (s *Store) sync() error {
	if f := s.faults.sync.Load(); f != nil {
		if err := (*f)(); err != nil {
			return err
		}
	}
	return s.db.Sync()
}
