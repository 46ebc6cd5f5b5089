package storage

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// MaxMessageIDLen is the longest message ID, in bytes (the envelope keeps
// a client's ID only up to this length).
const MaxMessageIDLen = 128

// A sent record, m|len16(sender)|sender|id -> version byte + topic, says
// where a sender's message went, so that a read receipt naming the message
// can be checked: only a recipient of the message may acknowledge it. The
// records expire through Badger's TTL, so they cost no sweep.
const sentVersion = 1

// maxSentTTL is the longest expiry honoured; a longer one means none.
const maxSentTTL = 100 * 365 * 24 * time.Hour

func checkSent(sender, id string) error {
	if err := CheckUserName(sender); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("%w: empty message id", ErrInvalid)
	}
	if len(id) > MaxMessageIDLen {
		return fmt.Errorf("%w: message id longer than %d bytes", ErrInvalid, MaxMessageIDLen)
	}
	return nil
}

// RecordSentAsync records that sender's message id went to topic; the
// record expires after ttl (ttl <= 0, or over 100 years, means no
// expiry). Badger keeps
// expiry times in whole seconds, so ttl is rounded up: the record lives at
// least ttl and less than ttl plus one second, and a receipt sent just in
// time is never refused. A second record for the same sender and id
// replaces the first.
//
// done (may be nil) is called once on the commit goroutine after the
// write is durable or failed; it must not block. RecordSentAsync returns
// an error only if the op could not be submitted (invalid arguments, store
// closed or failed); done is then not called.
func (s *Store) RecordSentAsync(sender, id, topic string, ttl time.Duration, done func(error)) error {
	done = orNoop(done)
	if err := checkSent(sender, id); err != nil {
		return err
	}
	if topic == "" || strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("%w: sent topic %q", ErrInvalid, topic)
	}
	if ttl > maxSentTTL {
		ttl = 0 // would overflow Badger's clock arithmetic: keep it
	}
	if ttl > 0 {
		// WithTTL stores the whole second of now+ttl, which may be up to
		// a second early: add all but a nanosecond of one so it is never
		// early.
		ttl += time.Second - time.Nanosecond
	}
	v := make([]byte, 0, 1+len(topic))
	v = append(v, sentVersion)
	v = append(v, topic...)
	return s.submit(&sentOp{key: sentKey(sender, id), val: v, ttl: ttl, done: done})
}

// sentOp is a single write with an optional TTL (writeOp has none).
type sentOp struct {
	key, val []byte
	ttl      time.Duration
	done     func(error)
}

func (o *sentOp) apply(b *batch) error {
	if o.ttl > 0 {
		b.setTTL(o.key, o.val, o.ttl)
	} else {
		b.set(o.key, o.val)
	}
	return nil
}

func (o *sentOp) finish(err error) { o.done(err) }

// SentTopic returns the topic recorded for sender's message id, or an
// error wrapping ErrNotFound if there is none (never recorded, or
// expired).
func (s *Store) SentTopic(sender, id string) (string, error) {
	if err := checkSent(sender, id); err != nil {
		return "", err
	}
	var topic string
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(sentKey(sender, id))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) < 2 {
				return fmt.Errorf("%w: short sent record", ErrCorrupt)
			}
			if v[0] != sentVersion {
				return fmt.Errorf("%w: sent record version %d", ErrUnsupportedVersion, v[0])
			}
			topic = string(v[1:])
			return nil
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: no sent record for %q's message %q", ErrNotFound, sender, id)
	}
	if err != nil {
		return "", fmt.Errorf("storage: sent record of %q's message %q: %w", sender, id, err)
	}
	return topic, nil
}

// Interface guard.
var _ op = (*sentOp)(nil)
