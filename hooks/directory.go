package hooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mqhub/mqhub/storage"
)

// ErrGroupFull is returned when a change would put more than MaxMembers
// members in a group.
var ErrGroupFull = errors.New("group full")

// ErrOwner is returned when removing a group's owner (delete the group
// instead).
var ErrOwner = errors.New("the owner cannot leave the group")

// ErrUnknownUser is returned when a group would get a member the hub does
// not know (see RequireKnownUsers).
var ErrUnknownUser = errors.New("unknown user")

// DirectoryStore is what Directory needs of *storage.Store.
type DirectoryStore interface {
	ListGroups(fn func(*storage.Group) error) error
	CreateGroup(ctx context.Context, g *storage.Group) error
	UpdateGroup(ctx context.Context, name string, fn func(*storage.Group) error) (*storage.Group, error)
	DeleteGroup(ctx context.Context, name string) error
	ListAllBlocks(fn func(user, blocked string) error) error
	Block(ctx context.Context, user, blocked string) error
	Unblock(ctx context.Context, user, blocked string) error
	GetSettings(user string) (storage.Settings, error)
	PutSettings(ctx context.Context, user string, st storage.Settings) error
}

var _ DirectoryStore = (*storage.Store)(nil)

// defaultMaxMembers bounds a group when NewDirectory is given no limit.
const defaultMaxMembers = 1024

// Directory is the in-memory view of groups, block lists and user
// settings. The MQTT hooks ask it about membership and blocks on every
// publish and delivery, so those answers never touch disk: all groups and
// blocks are loaded at start, settings on first use.
//
// Every change is written to the store first and reaches memory only once
// durable, so memory never shows what a crash would forget. Changes to one
// group (or one user's blocks, or one user's settings) are serialised from
// the store write to the memory update, so memory ends in the order the
// store applied them; changes to different keys run concurrently and share
// the store's group commits. Errors of the store keep their sentinels
// (storage.ErrNotFound, ErrExists, ErrInvalid) for errors.Is. A Directory
// is safe for concurrent use.
type Directory struct {
	store      DirectoryStore
	maxMembers int
	keys       keyLocks

	mu       sync.RWMutex
	groups   map[string]*storage.Group      // never modified once stored: replaced
	memberOf map[string]map[string]struct{} // user -> groups
	blocks   map[string]map[string]struct{} // user -> users blocked
	settings map[string]storage.Settings    // users seen so far
	onSet    []func(user string, st storage.Settings)
	known    func(user string) (bool, error) // nil: any valid name may be a member
}

// NewDirectory loads every group and block from store. maxMembers <= 0
// means 1024. Groups stored with more members than maxMembers (the limit
// was lowered) are kept as they are; they only cannot grow.
func NewDirectory(store DirectoryStore, maxMembers int) (*Directory, error) {
	if maxMembers <= 0 {
		maxMembers = defaultMaxMembers
	}
	d := &Directory{
		store:      store,
		maxMembers: maxMembers,
		keys:       keyLocks{m: map[string]*keyLock{}},
		groups:     map[string]*storage.Group{},
		memberOf:   map[string]map[string]struct{}{},
		blocks:     map[string]map[string]struct{}{},
		settings:   map[string]storage.Settings{},
	}
	if err := store.ListGroups(func(g *storage.Group) error {
		d.putGroupLocked(g)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("directory: load groups: %w", err)
	}
	if err := store.ListAllBlocks(func(user, blocked string) error {
		addTo(d.blocks, user, blocked)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("directory: load blocks: %w", err)
	}
	return d, nil
}

// RequireKnownUsers makes CreateGroup and AddMembers refuse members for
// whom known answers false, with ErrUnknownUser naming them: a group
// cannot list a user who does not exist (yet). Call it before the
// Directory is used.
func (d *Directory) RequireKnownUsers(known func(user string) (bool, error)) { d.known = known }

// checkKnown returns ErrUnknownUser naming every user of users that known
// refuses, leaving invalid names to the store's validation.
func (d *Directory) checkKnown(users []string) error {
	if d.known == nil {
		return nil
	}
	var unknown []string
	for _, u := range users {
		if storage.CheckUserName(u) != nil || slices.Contains(unknown, u) {
			continue
		}
		ok, err := d.known(u)
		if err != nil {
			return err
		}
		if !ok {
			unknown = append(unknown, u)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	return fmt.Errorf("%w %s: a member must be a user of the hub (in its user store, or one who has connected)",
		ErrUnknownUser, quoteAll(unknown))
}

// quoteAll lists names quoted, comma separated.
func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// IsMember reports whether user is a member of group.
func (d *Directory) IsMember(group, user string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := d.groups[group]
	if g == nil {
		return false
	}
	_, ok := slices.BinarySearch(g.Members, user)
	return ok
}

// Group returns a copy of a group and whether it exists.
func (d *Directory) Group(name string) (storage.Group, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := d.groups[name]
	if g == nil {
		return storage.Group{}, false
	}
	return copyGroup(g), true
}

// GroupsOf returns the names of the groups user is a member of, sorted.
func (d *Directory) GroupsOf(user string) []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return sortedKeys(d.memberOf[user])
}

// Groups returns the names of every group, sorted.
func (d *Directory) Groups() []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	names := make([]string, 0, len(d.groups))
	for name := range d.groups {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// CreateGroup creates a group owned by owner with members (the owner is
// added, duplicates are dropped) and returns it as stored. It fails with
// ErrGroupFull over MaxMembers, ErrUnknownUser, and with the store's
// ErrExists or ErrInvalid.
func (d *Directory) CreateGroup(ctx context.Context, name, title, owner string, members []string) (storage.Group, error) {
	all := append(slices.Clone(members), owner)
	slices.Sort(all)
	all = slices.Compact(all)
	if n := len(all); n > d.maxMembers {
		return storage.Group{}, fmt.Errorf("%w: group %q would have %d members, the limit is %d", ErrGroupFull, name, n, d.maxMembers)
	}
	if err := d.checkKnown(slices.DeleteFunc(all, func(u string) bool { return u == owner })); err != nil {
		return storage.Group{}, err
	}
	unlock, err := d.keys.lock(ctx, groupLockKey(name))
	if err != nil {
		return storage.Group{}, err
	}
	defer unlock()
	g := &storage.Group{Name: name, Title: title, Owner: owner, Members: members}
	if err := d.store.CreateGroup(context.WithoutCancel(ctx), g); err != nil {
		return storage.Group{}, err
	}
	d.mu.Lock()
	d.putGroupLocked(g)
	d.mu.Unlock()
	return copyGroup(g), nil
}

// RenameGroup sets a group's title (its name, and so its topic, never
// changes).
func (d *Directory) RenameGroup(ctx context.Context, name, title string) (storage.Group, error) {
	return d.updateGroup(ctx, name, func(g *storage.Group) error {
		g.Title = title
		return nil
	})
}

// AddMembers adds users to a group; users already members are ignored. It
// fails with ErrGroupFull if the group would exceed MaxMembers, and with
// ErrUnknownUser, adding nobody.
func (d *Directory) AddMembers(ctx context.Context, name string, users []string) (storage.Group, error) {
	var joining []string
	for _, u := range users {
		if !d.IsMember(name, u) {
			joining = append(joining, u)
		}
	}
	if err := d.checkKnown(joining); err != nil {
		return storage.Group{}, err
	}
	return d.updateGroup(ctx, name, func(g *storage.Group) error {
		members := append(slices.Clone(g.Members), users...)
		slices.Sort(members)
		members = slices.Compact(members)
		if len(members) > d.maxMembers && len(members) > len(g.Members) {
			return fmt.Errorf("%w: group %q would have %d members, the limit is %d", ErrGroupFull, name, len(members), d.maxMembers)
		}
		g.Members = members
		return nil
	})
}

// RemoveMembers removes users from a group; users who are not members are
// ignored. It fails with ErrOwner, removing nobody, if users holds the
// owner.
func (d *Directory) RemoveMembers(ctx context.Context, name string, users []string) (storage.Group, error) {
	return d.updateGroup(ctx, name, func(g *storage.Group) error {
		if slices.Contains(users, g.Owner) {
			return fmt.Errorf("%w: %q owns group %q", ErrOwner, g.Owner, name)
		}
		g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return slices.Contains(users, m) })
		return nil
	})
}

// updateGroup changes a group in the store (one atomic read-modify-write
// there), then puts the stored result in memory, both under the group's
// key lock so memory takes the results in the store's order.
func (d *Directory) updateGroup(ctx context.Context, name string, fn func(*storage.Group) error) (storage.Group, error) {
	unlock, err := d.keys.lock(ctx, groupLockKey(name))
	if err != nil {
		return storage.Group{}, err
	}
	defer unlock()
	g, err := d.store.UpdateGroup(context.WithoutCancel(ctx), name, fn)
	if err != nil {
		return storage.Group{}, err
	}
	d.mu.Lock()
	d.putGroupLocked(g)
	d.mu.Unlock()
	return copyGroup(g), nil
}

// DeleteGroup deletes a group, or fails with storage.ErrNotFound.
func (d *Directory) DeleteGroup(ctx context.Context, name string) error {
	unlock, err := d.keys.lock(ctx, groupLockKey(name))
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.store.DeleteGroup(context.WithoutCancel(ctx), name); err != nil {
		return err
	}
	d.mu.Lock()
	d.dropGroupLocked(name)
	d.mu.Unlock()
	return nil
}

// Blocked reports whether user has blocked sender.
func (d *Directory) Blocked(user, sender string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.blocks[user][sender]
	return ok
}

// Block records that user blocks blocked; blocking twice is not an error.
func (d *Directory) Block(ctx context.Context, user, blocked string) error {
	unlock, err := d.keys.lock(ctx, blockLockKey(user))
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.store.Block(context.WithoutCancel(ctx), user, blocked); err != nil {
		return err
	}
	d.mu.Lock()
	addTo(d.blocks, user, blocked)
	d.mu.Unlock()
	return nil
}

// Unblock lifts a block, or fails with storage.ErrNotFound if there was
// none.
func (d *Directory) Unblock(ctx context.Context, user, blocked string) error {
	unlock, err := d.keys.lock(ctx, blockLockKey(user))
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.store.Unblock(context.WithoutCancel(ctx), user, blocked); err != nil {
		return err
	}
	d.mu.Lock()
	removeFrom(d.blocks, user, blocked)
	d.mu.Unlock()
	return nil
}

// BlockedBy returns the users user has blocked, sorted.
func (d *Directory) BlockedBy(user string) []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return sortedKeys(d.blocks[user])
}

// Settings returns user's settings from memory, reading them from the
// store on first use (they are read at every disconnect). If the store
// cannot be read nothing is cached, and the answer errs on the private
// side (HideLastSeen), so a disk error never shows what a user hid; an
// invalid name (no such user can exist) gets the zero Settings.
func (d *Directory) Settings(user string) storage.Settings {
	d.mu.RLock()
	st, ok := d.settings[user]
	d.mu.RUnlock()
	if ok {
		return st
	}
	st, err := d.store.GetSettings(user)
	if errors.Is(err, storage.ErrInvalid) {
		return storage.Settings{}
	}
	if err != nil {
		return storage.Settings{HideLastSeen: true}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// A SetSettings may have cached a newer value while we read: keep it.
	if cur, ok := d.settings[user]; ok {
		return cur
	}
	d.settings[user] = st
	return st
}

// SetSettings stores user's settings, caches them, then calls the
// OnSettings listeners. Listeners of one user's changes run in the order
// the changes were stored, holding that user's settings lock: a listener
// must not call SetSettings for the same user.
func (d *Directory) SetSettings(ctx context.Context, user string, st storage.Settings) error {
	unlock, err := d.keys.lock(ctx, settingsLockKey(user))
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.store.PutSettings(context.WithoutCancel(ctx), user, st); err != nil {
		return err
	}
	d.mu.Lock()
	d.settings[user] = st
	listeners := d.onSet
	d.mu.Unlock()
	for _, fn := range listeners {
		fn(user, st)
	}
	return nil
}

// OnSettings registers fn to be called after every successful
// SetSettings (the presence hook re-publishes presence when HideLastSeen
// changes). fn is called outside the Directory's lock.
func (d *Directory) OnSettings(fn func(user string, st storage.Settings)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// A fresh slice: SetSettings ranges over the old one without the lock.
	d.onSet = append(slices.Clip(d.onSet), fn)
}

// putGroupLocked replaces a group in memory and its members' index. g is
// owned by the Directory from now on. d.mu must be held (or d not yet
// shared).
func (d *Directory) putGroupLocked(g *storage.Group) {
	d.dropGroupLocked(g.Name)
	d.groups[g.Name] = g
	for _, m := range g.Members {
		addTo(d.memberOf, m, g.Name)
	}
}

func (d *Directory) dropGroupLocked(name string) {
	old := d.groups[name]
	if old == nil {
		return
	}
	for _, m := range old.Members {
		removeFrom(d.memberOf, m, name)
	}
	delete(d.groups, name)
}

func copyGroup(g *storage.Group) storage.Group {
	c := *g
	c.Members = slices.Clone(g.Members)
	return c
}

func addTo(m map[string]map[string]struct{}, k, v string) {
	set := m[k]
	if set == nil {
		set = map[string]struct{}{}
		m[k] = set
	}
	set[v] = struct{}{}
}

// removeFrom deletes v from k's set, and the set once empty, so users who
// leave everything cost no memory.
func removeFrom(m map[string]map[string]struct{}, k, v string) {
	set := m[k]
	delete(set, v)
	if len(set) == 0 {
		delete(m, k)
	}
}

func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Key lock names: one namespace byte, then the group or user name (names
// hold no NUL, so the spaces cannot collide).
func groupLockKey(name string) string    { return "g\x00" + name }
func blockLockKey(user string) string    { return "b\x00" + user }
func settingsLockKey(user string) string { return "s\x00" + user }

// keyLocks serialises the changes of one key (a group, a user's blocks,
// a user's settings) from the store write to the memory update, without
// holding the Directory's lock over a disk write. Waiting honours the
// context; a lock costs memory only while held or awaited.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters, guarded by keyLocks.mu
}

func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	// A select with both cases ready picks at random: a caller whose
	// context is already done must not make its change.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	kl := l.m[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = kl
	}
	kl.refs++
	l.mu.Unlock()
	select {
	case kl.ch <- struct{}{}:
		return func() {
			<-kl.ch
			l.release(key, kl)
		}, nil
	case <-ctx.Done():
		l.release(key, kl)
		return nil, ctx.Err()
	}
}

func (l *keyLocks) release(key string, kl *keyLock) {
	l.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(l.m, key)
	}
	l.mu.Unlock()
}
