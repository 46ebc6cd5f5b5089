package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
)

// MaxGroupNameLen is the longest group name, in bytes: a group name is
// also a topic level (g/{name}), held to the same rules as a user name.
const MaxGroupNameLen = MaxUserNameLen

// MaxGroupTitleLen is the longest group title, in bytes.
const MaxGroupTitleLen = 256

// Group is a chat group. Name is its key and its topic g/{Name}; it never
// changes. Title is the display name (renaming a group changes Title).
type Group struct {
	Name  string
	Title string
	// Owner is the user who created the group; it may manage it.
	Owner string
	// Members is sorted and unique and always includes Owner: the store
	// normalises it on every write, so readers can binary-search it.
	Members []string
	// Created is the creation time in unix nanoseconds, set from the
	// store's clock when zero.
	Created int64
}

// CheckGroupName returns an error wrapping ErrInvalid unless name is a
// valid group name. The rules are CheckUserName's (1 to MaxGroupNameLen
// bytes of UTF-8 without '+', '#', '/' or control characters) for the same
// reason: the name is substituted into the topic g/{name}, and must never
// add a level or a wildcard to it.
func CheckGroupName(name string) error { return checkName("group name", name) }

// checkName applies CheckUserName's rules to a name of another kind, so
// the error names what was wrong.
func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case len(name) > MaxUserNameLen:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, what, MaxUserNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, name)
	}
	for _, r := range name {
		if r == '+' || r == '#' || r == '/' || unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %q contains %q", ErrInvalid, what, name, r)
		}
	}
	return nil
}

// normalise validates g before it is written and puts Members in their
// stored form: sorted, unique, with Owner. Members is copied first so the
// caller's slice is never reordered.
func (g *Group) normalise() error {
	if err := CheckGroupName(g.Name); err != nil {
		return err
	}
	if len(g.Title) > MaxGroupTitleLen {
		return fmt.Errorf("%w: group %q: title longer than %d bytes", ErrInvalid, g.Name, MaxGroupTitleLen)
	}
	if !utf8.ValidString(g.Title) {
		return fmt.Errorf("%w: group %q: title is not valid UTF-8", ErrInvalid, g.Name)
	}
	// A title is shown as one line: control characters (newlines, escape
	// sequences) could forge other lines of a client's display.
	for _, r := range g.Title {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: group %q: title contains %q", ErrInvalid, g.Name, r)
		}
	}
	if err := CheckUserName(g.Owner); err != nil {
		return fmt.Errorf("group %q: owner: %w", g.Name, err)
	}
	members := make([]string, 0, len(g.Members)+1)
	for _, m := range g.Members {
		if err := CheckUserName(m); err != nil {
			return fmt.Errorf("group %q: member: %w", g.Name, err)
		}
		members = append(members, m)
	}
	members = append(members, g.Owner)
	slices.Sort(members)
	g.Members = slices.Compact(members)
	return nil
}

const groupVersion = 1

// MarshalBinary encodes the group in a versioned binary format.
func (g *Group) MarshalBinary() ([]byte, error) {
	n := 16 + len(g.Name) + len(g.Title) + len(g.Owner)
	for _, m := range g.Members {
		n += 2 + len(m)
	}
	e := enc{b: make([]byte, 0, n)}
	e.byte(groupVersion)
	e.varint(g.Created)
	e.str(g.Name)
	e.str(g.Title)
	e.str(g.Owner)
	e.uvarint(uint64(len(g.Members)))
	for _, m := range g.Members {
		e.str(m)
	}
	return e.b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; it never panics and
// returns an error wrapping ErrCorrupt (or ErrUnsupportedVersion) on
// malformed input. It checks the structure only, not the naming rules.
func (g *Group) UnmarshalBinary(b []byte) error {
	d := dec{b: b}
	if v := d.byte("version"); d.err == nil && v != groupVersion {
		return fmt.Errorf("%w: group version %d", ErrUnsupportedVersion, v)
	}
	var out Group
	out.Created = d.varint("created")
	out.Name = d.str("name")
	out.Title = d.str("title")
	out.Owner = d.str("owner")
	// Each member takes at least its 1-byte length.
	if n := d.count("members", 1); n > 0 {
		out.Members = make([]string, n)
		for i := range out.Members {
			out.Members[i] = d.str("member")
		}
	}
	if err := d.end(); err != nil {
		return err
	}
	*g = out
	return nil
}

// CreateGroup stores a new group durably, or fails with an error wrapping
// ErrExists if a group of that name exists; the check and the write are
// one atomic step. It validates the names (CheckGroupName, CheckUserName
// for the owner and members) and the title (at most MaxGroupTitleLen bytes
// of UTF-8 without control characters), and normalises Members.
//
// Unlike CreateUser it sets *g to the stored record on success (Members
// normalised, Created set from the store's clock when zero): the caller
// caches what is on disk without reading it back.
func (s *Store) CreateGroup(ctx context.Context, g *Group) error {
	ng := *g
	if err := ng.normalise(); err != nil {
		return err
	}
	w := make(waiter, 1)
	o := &createGroupOp{g: ng, done: func(err error) { w <- err }}
	if err := s.submit(o); err != nil {
		return err
	}
	if err := w.wait(ctx.Done(), ctx.Err); err != nil {
		return err
	}
	*g = o.out
	return nil
}

// createGroupOp writes a new group, checking for it in the commit
// goroutine so that create-if-absent is atomic.
type createGroupOp struct {
	g    Group
	out  Group // result, valid once finish(nil) ran
	done func(error)
}

func (o *createGroupOp) apply(b *batch) error {
	g := o.g
	key := groupKey(g.Name)
	_, err := b.get(key)
	switch {
	case err == nil:
		return fmt.Errorf("%w: group %q", ErrExists, g.Name)
	case !errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("storage: create group %q: %w", g.Name, err)
	}
	if g.Created == 0 {
		g.Created = b.now.UnixNano()
	}
	v, err := g.MarshalBinary()
	if err != nil {
		return err
	}
	b.set(key, v)
	o.out = g
	return nil
}

func (o *createGroupOp) finish(err error) { o.done(err) }

// GetGroup returns a group record, or an error wrapping ErrNotFound.
func (s *Store) GetGroup(name string) (*Group, error) {
	if err := CheckGroupName(name); err != nil {
		return nil, err
	}
	g := new(Group)
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(groupKey(name))
		if err != nil {
			return err
		}
		return item.Value(g.UnmarshalBinary)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: group %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get group %q: %w", name, err)
	}
	return g, nil
}

// UpdateGroup changes a group durably with fn and returns the stored
// result, or an error wrapping ErrNotFound if the group does not exist.
// The read, fn and the write run as one step on the commit goroutine, so
// concurrent updates never lose one another (two callers adding a member
// each both see their member stored).
//
// fn gets a copy of the stored group. Name and Created are restored after
// it (they never change); the result is then validated and normalised like
// CreateGroup's. An error from fn aborts the update and is returned as is.
// fn runs on the commit goroutine, which every write of the store waits
// for: it must be quick, must not call the Store (it would deadlock), and
// may run more than once (a split batch applies an op again), so it must
// change nothing but its argument.
func (s *Store) UpdateGroup(ctx context.Context, name string, fn func(*Group) error) (*Group, error) {
	if err := CheckGroupName(name); err != nil {
		return nil, err
	}
	w := make(waiter, 1)
	o := &updateGroupOp{name: name, fn: fn, done: func(err error) { w <- err }}
	if err := s.submit(o); err != nil {
		return nil, err
	}
	if err := w.wait(ctx.Done(), ctx.Err); err != nil {
		return nil, err
	}
	out := o.out
	return &out, nil
}

type updateGroupOp struct {
	name string
	fn   func(*Group) error
	out  Group // result, valid once finish(nil) ran
	done func(error)
}

func (o *updateGroupOp) apply(b *batch) error {
	key := groupKey(o.name)
	item, err := b.get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%w: group %q", ErrNotFound, o.name)
	}
	if err != nil {
		return fmt.Errorf("storage: update group %q: %w", o.name, err)
	}
	// Decoding gives fn a fresh copy: nothing it keeps aliases Badger's
	// value or an earlier run's result.
	var g Group
	if err := item.Value(g.UnmarshalBinary); err != nil {
		return fmt.Errorf("storage: group %q: %w", o.name, err)
	}
	created := g.Created
	if err := o.callFn(&g); err != nil {
		return err
	}
	g.Name, g.Created = o.name, created
	if err := g.normalise(); err != nil {
		return err
	}
	v, err := g.MarshalBinary()
	if err != nil {
		return err
	}
	b.set(key, v)
	o.out = g
	return nil
}

// callFn runs the caller's fn. A panic in it would kill the commit
// goroutine and with it every write of the process, so it fails this op
// alone instead.
func (o *updateGroupOp) callFn(g *Group) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("storage: update group %q: fn panicked: %v", o.name, r)
		}
	}()
	return o.fn(g)
}

func (o *updateGroupOp) finish(err error) { o.done(err) }

// DeleteGroup deletes a group record durably, or returns an error wrapping
// ErrNotFound if it does not exist.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	if err := CheckGroupName(name); err != nil {
		return err
	}
	w := make(waiter, 1)
	if err := s.submit(&deleteGroupOp{name: name, done: func(err error) { w <- err }}); err != nil {
		return err
	}
	return w.wait(ctx.Done(), ctx.Err)
}

// deleteGroupOp checks for the group in the commit goroutine, so that of
// two concurrent deletes exactly one succeeds.
type deleteGroupOp struct {
	name string
	done func(error)
}

func (o *deleteGroupOp) apply(b *batch) error {
	key := groupKey(o.name)
	_, err := b.get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%w: group %q", ErrNotFound, o.name)
	}
	if err != nil {
		return fmt.Errorf("storage: delete group %q: %w", o.name, err)
	}
	b.del(key)
	return nil
}

func (o *deleteGroupOp) finish(err error) { o.done(err) }

// ListGroups calls fn for every group in name byte order, streaming from
// disk. It stops at the first error fn returns and returns it. fn runs
// inside a read transaction: it may call the Store, but a long fn delays
// Close.
func (s *Store) ListGroups(fn func(*Group) error) error {
	return s.view(func(txn *badger.Txn) error {
		prefix := []byte{famGroup}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			g := new(Group)
			if err := it.Item().Value(g.UnmarshalBinary); err != nil {
				return fmt.Errorf("storage: group %q: %w", it.Item().Key()[len(prefix):], err)
			}
			if err := fn(g); err != nil {
				return err
			}
		}
		return nil
	})
}

// Interface guards.
var (
	_ op = (*createGroupOp)(nil)
	_ op = (*updateGroupOp)(nil)
	_ op = (*deleteGroupOp)(nil)
)
