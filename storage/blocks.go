package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// A block is one key, b|len16(user)|user|blocked, with an empty value:
// blocking twice writes the same key, and one user's list is one prefix
// scan in name order.

// checkBlock validates the two names of a block.
func checkBlock(user, blocked string) error {
	if err := CheckUserName(user); err != nil {
		return err
	}
	if err := CheckUserName(blocked); err != nil {
		return err
	}
	if user == blocked {
		return fmt.Errorf("%w: user %q cannot block themselves", ErrInvalid, user)
	}
	return nil
}

// Block records durably that user has blocked blocked. Blocking a user
// already blocked succeeds (the same key is written again).
func (s *Store) Block(ctx context.Context, user, blocked string) error {
	if err := checkBlock(user, blocked); err != nil {
		return err
	}
	return s.write(ctx, []kv{{key: blockKey(user, blocked), val: nil}})
}

// Unblock deletes a block durably, or returns an error wrapping
// ErrNotFound if user had not blocked blocked.
func (s *Store) Unblock(ctx context.Context, user, blocked string) error {
	if err := checkBlock(user, blocked); err != nil {
		return err
	}
	w := make(waiter, 1)
	if err := s.submit(&unblockOp{user: user, blocked: blocked, done: func(err error) { w <- err }}); err != nil {
		return err
	}
	return w.wait(ctx.Done(), ctx.Err)
}

// unblockOp checks for the block in the commit goroutine, so that of two
// concurrent unblocks exactly one succeeds and the other is told
// ErrNotFound.
type unblockOp struct {
	user, blocked string
	done          func(error)
}

func (o *unblockOp) apply(b *batch) error {
	key := blockKey(o.user, o.blocked)
	_, err := b.get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%w: %q has not blocked %q", ErrNotFound, o.user, o.blocked)
	}
	if err != nil {
		return fmt.Errorf("storage: unblock %q for %q: %w", o.blocked, o.user, err)
	}
	b.del(key)
	return nil
}

func (o *unblockOp) finish(err error) { o.done(err) }

// ListBlocked calls fn with every user that user has blocked, in byte
// order. It stops at the first error fn returns and returns it.
func (s *Store) ListBlocked(user string, fn func(blocked string) error) error {
	if err := CheckUserName(user); err != nil {
		return err
	}
	return s.keySuffixes(blockPrefix(user), fn)
}

// ListAllBlocks calls fn with every block of every user, ordered by user
// length then user then blocked (the key order), to load a cache at start.
// It reads keys only. It stops at the first error fn returns and returns
// it.
func (s *Store) ListAllBlocks(fn func(user, blocked string) error) error {
	return s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{famBlock}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			user, blocked, ok := splitUserScoped(it.Item().Key())
			if !ok || user == "" || blocked == "" {
				return fmt.Errorf("%w: block key %q", ErrCorrupt, it.Item().Key())
			}
			if err := fn(user, blocked); err != nil {
				return err
			}
		}
		return nil
	})
}

// Interface guards.
var _ op = (*unblockOp)(nil)
