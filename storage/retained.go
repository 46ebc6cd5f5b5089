package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// PutRetained stores m as the retained message of m.Topic, durably; an
// empty payload deletes the topic's retained message (MQTT semantics).
func (s *Store) PutRetained(ctx context.Context, m *Message) error {
	w := make(waiter, 1)
	if err := s.PutRetainedAsync(m, func(err error) { w <- err }); err != nil {
		return err
	}
	return w.wait(ctx.Done(), ctx.Err)
}

// PutRetainedAsync is PutRetained without waiting; done follows
// EnqueueAsync's rules.
func (s *Store) PutRetainedAsync(m *Message, done func(error)) error {
	done = orNoop(done)
	if m.Topic == "" || strings.ContainsAny(m.Topic, "+#") {
		return fmt.Errorf("%w: retained topic %q", ErrInvalid, m.Topic)
	}
	if len(m.Payload) == 0 {
		return s.writeAsync([]kv{{key: retainedKey(m.Topic), del: true}}, done)
	}
	if m.Created == 0 {
		m.Created = s.opts.Now().UnixNano()
	}
	v, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	return s.writeAsync([]kv{{key: retainedKey(m.Topic), val: v}}, done)
}

// DeleteRetained removes the retained message of topic (no error if none).
func (s *Store) DeleteRetained(ctx context.Context, topic string) error {
	return s.write(ctx, []kv{{key: retainedKey(topic), del: true}})
}

// GetRetained returns the retained message of topic, or ErrNotFound.
func (s *Store) GetRetained(topic string) (*Message, error) {
	m := new(Message)
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(retainedKey(topic))
		if err != nil {
			return err
		}
		return item.Value(m.UnmarshalBinary)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: retained %q", ErrNotFound, topic)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get retained %q: %w", topic, err)
	}
	return m, nil
}

// EachRetained calls fn for every retained message in topic byte order,
// streaming from disk. It stops at fn's first error and returns it.
func (s *Store) EachRetained(fn func(*Message) error) error {
	return s.scanRetained("", func(string) bool { return true }, fn)
}

// MatchRetained calls fn for every retained message whose topic matches
// the MQTT topic filter, streaming from disk: only the keys under the
// filter's literal prefix (the levels before its first wildcard) are
// scanned, so "devices/42/#" touches one subtree of 100,000 topics, and
// at most one message is decoded at a time. Expired messages are skipped.
// fn runs inside a read transaction: it may call the Store, but a long fn
// delays Close.
func (s *Store) MatchRetained(filter string, fn func(*Message) error) error {
	if err := ValidFilter(filter); err != nil {
		return err
	}
	return s.scanRetained(literalPrefix(filter), func(topic string) bool { return MatchTopic(filter, topic) }, fn)
}

func (s *Store) scanRetained(prefix string, match func(string) bool, fn func(*Message) error) error {
	nowUnix := s.opts.Now().Unix()
	return s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: retainedKey(prefix), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			// Match on the key first: values of non-matching topics are
			// never read.
			if !match(string(item.Key()[1:])) {
				continue
			}
			m := new(Message)
			if err := item.Value(m.UnmarshalBinary); err != nil {
				s.log.Warn().Err(err).Str("topic", string(item.Key()[1:])).Msg("skip corrupt retained message")
				continue
			}
			if m.Expired(nowUnix) {
				continue
			}
			if err := fn(m); err != nil {
				return err
			}
		}
		return nil
	})
}

// literalPrefix returns the part of a filter before its first wildcard
// level. For "a/b/#" it is "a/b" (the '#' also matches the parent "a/b");
// for "a/+/c" it is "a/".
func literalPrefix(filter string) string {
	i := strings.IndexAny(filter, "+#")
	if i < 0 {
		return filter
	}
	p := filter[:i]
	if filter[i] == '#' && i > 0 {
		p = p[:len(p)-1] // drop the '/' before '#'
	}
	return p
}

// ValidFilter checks an MQTT topic filter: non-empty, '#' only as the
// whole last level, '+' only as a whole level.
func ValidFilter(filter string) error {
	if filter == "" {
		return fmt.Errorf("%w: empty topic filter", ErrInvalid)
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1,
			l != "#" && strings.Contains(l, "#"),
			l != "+" && strings.Contains(l, "+"):
			return fmt.Errorf("%w: topic filter %q", ErrInvalid, filter)
		}
	}
	return nil
}

// MatchTopic reports whether topic matches the MQTT filter: '+' matches one
// level, a final '#' matches the parent level and any number below, and a
// filter starting with a wildcard does not match a topic starting with
// '$' (MQTT 5 section 4.7.2).
func MatchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			if !fmore && !tmore {
				return true
			}
			// "a/#" matches "a": the filter has exactly "/#" left.
			return !tmore && frest == "#"
		}
		filter, topic = frest, trest
	}
}
