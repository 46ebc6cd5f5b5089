package storage

import (
	"context"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/bcrypt"
)

// MaxUserNameLen is the longest user name, in bytes.
const MaxUserNameLen = 256

// User is one account of the hub. Name is its key.
type User struct {
	Name string
	// PasswordHash is a bcrypt hash (HashPassword); empty means the user
	// cannot log in with a password.
	PasswordHash []byte
	Admin        bool
	// Created is the creation time in unix nanoseconds.
	Created int64
}

// CheckUserName returns an error wrapping ErrInvalid unless name is a
// valid user name: 1 to MaxUserNameLen bytes of UTF-8 without '+', '#',
// '/' or control characters (NUL included). Because a name never holds a
// topic separator or wildcard, substituting it into an ACL pattern can
// never widen the pattern.
func CheckUserName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty user name", ErrInvalid)
	case len(name) > MaxUserNameLen:
		return fmt.Errorf("%w: user name longer than %d bytes", ErrInvalid, MaxUserNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: user name %q is not valid UTF-8", ErrInvalid, name)
	}
	for _, r := range name {
		if r == '+' || r == '#' || r == '/' || unicode.IsControl(r) {
			return fmt.Errorf("%w: user name %q contains %q", ErrInvalid, name, r)
		}
	}
	return nil
}

// bcryptCost is the work factor of HashPassword: about 50 ms per hash on
// one core, paid at login and when a password is set.
const bcryptCost = 10

// maxPasswordLen is bcrypt's limit: it ignores bytes beyond 72.
const maxPasswordLen = 72

// HashPassword returns the bcrypt hash of pw (cost 10). Empty passwords
// and passwords over 72 bytes (which bcrypt would silently truncate) are
// refused with an error wrapping ErrInvalid.
func HashPassword(pw []byte) ([]byte, error) {
	if len(pw) == 0 {
		return nil, fmt.Errorf("%w: empty password", ErrInvalid)
	}
	if len(pw) > maxPasswordLen {
		return nil, fmt.Errorf("%w: password longer than %d bytes (bcrypt's limit)", ErrInvalid, maxPasswordLen)
	}
	h, err := bcrypt.GenerateFromPassword(pw, bcryptCost)
	if err != nil {
		return nil, fmt.Errorf("storage: hash password: %w", err)
	}
	return h, nil
}

// CheckPassword reports whether pw matches the bcrypt hash. The comparison
// is constant time; a malformed hash, an empty password or one longer than
// 72 bytes never matches.
func CheckPassword(hash, pw []byte) bool {
	if len(pw) == 0 || len(pw) > maxPasswordLen {
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, pw) == nil
}

const userVersion = 1

const (
	userFlagAdmin = 1
	userFlagKnown = userFlagAdmin
)

// MarshalBinary encodes the user in a versioned binary format.
func (u *User) MarshalBinary() ([]byte, error) {
	e := enc{b: make([]byte, 0, 16+len(u.Name)+len(u.PasswordHash))}
	e.byte(userVersion)
	var flags byte
	if u.Admin {
		flags |= userFlagAdmin
	}
	e.byte(flags)
	e.varint(u.Created)
	e.str(u.Name)
	e.bytes(u.PasswordHash)
	return e.b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; it never panics and
// returns an error wrapping ErrCorrupt (or ErrUnsupportedVersion) on
// malformed input.
func (u *User) UnmarshalBinary(b []byte) error {
	d := dec{b: b}
	if v := d.byte("version"); d.err == nil && v != userVersion {
		return fmt.Errorf("%w: user version %d", ErrUnsupportedVersion, v)
	}
	var out User
	flags := d.byte("flags")
	if flags&^userFlagKnown != 0 {
		d.fail("user flags")
	}
	out.Admin = flags&userFlagAdmin != 0
	out.Created = d.varint("created")
	out.Name = d.str("name")
	out.PasswordHash = d.bytes("password hash")
	if err := d.end(); err != nil {
		return err
	}
	*u = out
	return nil
}

// checkUser validates a user record before it is written.
func checkUser(u *User) error {
	if err := CheckUserName(u.Name); err != nil {
		return err
	}
	if len(u.PasswordHash) > 0 {
		if _, err := bcrypt.Cost(u.PasswordHash); err != nil {
			return fmt.Errorf("%w: user %q: password hash is not a bcrypt hash", ErrInvalid, u.Name)
		}
	}
	return nil
}

// PutUser stores (or replaces) a user record durably. A zero Created
// keeps the creation time of the record it replaces, or is set to the
// store's clock for a new user; u itself is not modified.
func (s *Store) PutUser(ctx context.Context, u *User) error {
	return s.putUser(ctx, u, false)
}

// CreateUser stores a new user record durably, like PutUser, but fails
// with an error wrapping ErrExists if the user already exists. The check
// and the write are one atomic step.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	return s.putUser(ctx, u, true)
}

func (s *Store) putUser(ctx context.Context, u *User, create bool) error {
	if err := checkUser(u); err != nil {
		return err
	}
	w := make(waiter, 1)
	o := &putUserOp{u: *u, create: create, done: func(err error) { w <- err }}
	if err := s.submit(o); err != nil {
		return err
	}
	return w.wait(ctx.Done(), ctx.Err)
}

// putUserOp writes a user record, reading the current one in the commit
// goroutine so that create-if-absent and keeping Created are atomic.
type putUserOp struct {
	u      User
	create bool
	done   func(error)
}

func (o *putUserOp) apply(b *batch) error {
	u := o.u
	key := userKey(u.Name)
	item, err := b.get(key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		if u.Created == 0 {
			u.Created = b.now.UnixNano()
		}
	case err != nil:
		return fmt.Errorf("storage: put user %q: %w", u.Name, err)
	case o.create:
		return fmt.Errorf("%w: user %q", ErrExists, u.Name)
	case u.Created == 0:
		var old User
		if err := item.Value(old.UnmarshalBinary); err != nil {
			return fmt.Errorf("storage: user %q: %w", u.Name, err)
		}
		u.Created = old.Created
	}
	v, err := u.MarshalBinary()
	if err != nil {
		return err
	}
	b.set(key, v)
	return nil
}

func (o *putUserOp) finish(err error) { o.done(err) }

// GetUser returns a user record, or an error wrapping ErrNotFound.
func (s *Store) GetUser(name string) (*User, error) {
	if err := CheckUserName(name); err != nil {
		return nil, err
	}
	u := new(User)
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(userKey(name))
		if err != nil {
			return err
		}
		return item.Value(u.UnmarshalBinary)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: user %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get user %q: %w", name, err)
	}
	return u, nil
}

// ListUsers calls fn for every user in name byte order, streaming from
// disk. It stops at the first error fn returns and returns it. fn runs
// inside a read transaction: it may call the Store, but a long fn delays
// Close.
func (s *Store) ListUsers(fn func(*User) error) error {
	return s.view(func(txn *badger.Txn) error {
		prefix := userPrefix()
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			u := new(User)
			if err := it.Item().Value(u.UnmarshalBinary); err != nil {
				return fmt.Errorf("storage: user %q: %w", it.Item().Key()[len(prefix):], err)
			}
			if err := fn(u); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteUser deletes a user record durably, then releases every client ID
// the user owns (ReleaseClientIDs). If the user does not exist it still
// releases leftover client IDs (a crash between the two steps leaves
// some), then returns an error wrapping ErrNotFound; so calling it again
// after a failure finishes the job.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	if err := CheckUserName(name); err != nil {
		return err
	}
	w := make(waiter, 1)
	o := &deleteUserOp{name: name, done: func(err error) { w <- err }}
	if err := s.submit(o); err != nil {
		return err
	}
	if err := w.wait(ctx.Done(), ctx.Err); err != nil {
		return err
	}
	if err := s.ReleaseClientIDs(ctx, name); err != nil {
		return err
	}
	if !o.found {
		return fmt.Errorf("%w: user %q", ErrNotFound, name)
	}
	return nil
}

type deleteUserOp struct {
	name  string
	found bool
	done  func(error)
}

func (o *deleteUserOp) apply(b *batch) error {
	key := userKey(o.name)
	_, err := b.get(key)
	o.found = err == nil
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: delete user %q: %w", o.name, err)
	}
	b.del(key)
	return nil
}

func (o *deleteUserOp) finish(err error) { o.done(err) }

const ownerVersion = 1

// owner is the record of a client ID's owner.
type owner struct {
	user    string
	claimed int64 // unix nanoseconds
}

func (ow owner) marshal() []byte {
	e := enc{b: make([]byte, 0, 12+len(ow.user))}
	e.byte(ownerVersion)
	e.str(ow.user)
	e.varint(ow.claimed)
	return e.b
}

func (ow *owner) unmarshal(b []byte) error {
	d := dec{b: b}
	if v := d.byte("version"); d.err == nil && v != ownerVersion {
		return fmt.Errorf("%w: owner version %d", ErrUnsupportedVersion, v)
	}
	var out owner
	out.user = d.str("user")
	out.claimed = d.varint("claimed")
	if err := d.end(); err != nil {
		return err
	}
	*ow = out
	return nil
}

// ClientIDOwner returns the user who owns clientID, or an error wrapping
// ErrNotFound if nobody has claimed it.
func (s *Store) ClientIDOwner(clientID string) (string, error) {
	if err := checkSID(clientID); err != nil {
		return "", err
	}
	var ow owner
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(ownerKey(clientID))
		if err != nil {
			return err
		}
		return item.Value(ow.unmarshal)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: client id %q has no owner", ErrNotFound, clientID)
	}
	if err != nil {
		return "", fmt.Errorf("storage: owner of client id %q: %w", clientID, err)
	}
	return ow.user, nil
}

// ClaimClientID makes user the owner of clientID if it has none, durably,
// and returns the owner: user if the claim took (or user already owned
// it), else the user who owns it. The caller compares. Claims are checked
// and set on the commit goroutine, so of concurrent claims by different
// users exactly one wins and every caller gets the same owner.
//
// An existing owner is read without going through the commit goroutine,
// so a reconnect costs no write. Such a read may see a claim whose group
// commit is not yet fsynced (Badger shows commits before our fsync); its
// caller is still waiting, and a crash in that window forgets the claim.
func (s *Store) ClaimClientID(ctx context.Context, clientID, user string) (string, error) {
	if err := checkSID(clientID); err != nil {
		return "", err
	}
	if err := CheckUserName(user); err != nil {
		return "", err
	}
	if ow, err := s.ClientIDOwner(clientID); err == nil {
		return ow, nil
	} else if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	w := make(waiter, 1)
	o := &claimOp{clientID: clientID, user: user, done: func(err error) { w <- err }}
	if err := s.submit(o); err != nil {
		return "", err
	}
	if err := w.wait(ctx.Done(), ctx.Err); err != nil {
		return "", err
	}
	return o.owner, nil
}

type claimOp struct {
	clientID, user string
	owner          string // result, valid once finish(nil) ran
	done           func(error)
}

func (o *claimOp) apply(b *batch) error {
	o.owner = ""
	key := ownerKey(o.clientID)
	item, err := b.get(key)
	switch {
	case err == nil:
		var ow owner
		if err := item.Value(ow.unmarshal); err != nil {
			return fmt.Errorf("storage: owner of client id %q: %w", o.clientID, err)
		}
		o.owner = ow.user
		return nil
	case errors.Is(err, badger.ErrKeyNotFound):
		b.set(key, owner{user: o.user, claimed: b.now.UnixNano()}.marshal())
		b.set(ownedKey(o.user, o.clientID), nil)
		o.owner = o.user
		return nil
	default:
		return fmt.Errorf("storage: claim client id %q: %w", o.clientID, err)
	}
}

func (o *claimOp) finish(err error) { o.done(err) }

// ListClientIDs calls fn with every client ID user owns, in byte order.
// It stops at the first error fn returns and returns it.
func (s *Store) ListClientIDs(user string, fn func(clientID string) error) error {
	if err := CheckUserName(user); err != nil {
		return err
	}
	return s.keySuffixes(ownedPrefix(user), fn)
}

// KnownUser reports whether the hub knows a user: a record in the user
// store, or a client ID it owns (every authenticated user claims one at
// its first CONNECT, so this covers users who log in with a JWT or a
// client certificate and have no record). Two point reads at most.
func (s *Store) KnownUser(name string) (bool, error) {
	if err := CheckUserName(name); err != nil {
		return false, err
	}
	if _, err := s.GetUser(name); err == nil {
		return true, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	owns := false
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: ownedPrefix(name)})
		defer it.Close()
		it.Rewind()
		owns = it.Valid()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("storage: client ids of %q: %w", name, err)
	}
	return owns, nil
}

// keySuffixes calls fn with what follows prefix in every key under it, in
// byte order, for indexes whose keys carry all there is (empty values).
func (s *Store) keySuffixes(prefix []byte, fn func(string) error) error {
	return s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := fn(string(it.Item().Key()[len(prefix):])); err != nil {
				return err
			}
		}
		return nil
	})
}

// releaseChunk bounds the client IDs one release op frees (two deletes
// each), so the op fits in one transaction however many a user owns.
const releaseChunk = 500

// ReleaseClientIDs deletes the ownership records of every client ID user
// owns, durably, in chunks of bounded size; afterwards anyone may claim
// them. DeleteUser calls it.
func (s *Store) ReleaseClientIDs(ctx context.Context, user string) error {
	if err := CheckUserName(user); err != nil {
		return err
	}
	w := make(waiter, 1)
	o := &releaseOp{user: user, done: func(err error) { w <- err }}
	for {
		if err := s.submit(o); err != nil {
			return err
		}
		if err := w.wait(ctx.Done(), ctx.Err); err != nil {
			return err
		}
		if !o.more {
			return nil
		}
	}
}

// releaseOp frees up to releaseChunk of a user's client IDs: the index
// entry, and the owner record if it still names the user. It deletes all
// it scans, so the next op starts again at the prefix.
type releaseOp struct {
	user string
	more bool // result: the chunk was full, more may follow
	done func(error)
}

func (o *releaseOp) apply(b *batch) error {
	prefix := ownedPrefix(o.user)
	var keys [][]byte
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid() && len(keys) < releaseChunk; it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	o.more = len(keys) == releaseChunk
	it.Close()
	for _, k := range keys {
		b.del(k)
		clientID := string(k[len(prefix):])
		okey := ownerKey(clientID)
		item, err := b.get(okey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("storage: release client id %q: %w", clientID, err)
		}
		var ow owner
		if err := item.Value(ow.unmarshal); err != nil || ow.user == o.user {
			b.del(okey) // ours, or corrupt: free it either way
		}
	}
	return nil
}

func (o *releaseOp) finish(err error) { o.done(err) }

// Interface guards.
var (
	_ op = (*putUserOp)(nil)
	_ op = (*deleteUserOp)(nil)
	_ op = (*claimOp)(nil)
	_ op = (*releaseOp)(nil)
)
