package storage

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

// testHash is a valid bcrypt hash at the minimum cost, so CRUD tests do
// not pay for cost 10 under the race detector.
func testHash(t testing.TB, pw string) []byte {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestCheckUserName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"bob.smith@example.com", true},
		{"Zoë-日本", true},
		{"with space", true},
		{strings.Repeat("a", MaxUserNameLen), true},
		{"", false},
		{strings.Repeat("a", MaxUserNameLen+1), false},
		{"a+b", false},
		{"a#", false},
		{"a/b", false},
		{"/", false},
		{"a\x00b", false},
		{"tab\t", false},
		{"nl\n", false},
		{"del\x7f", false},
		{"c1\u0085", false},
		{"bad\xffutf8", false},
	} {
		t.Run(fmt.Sprintf("%q", tc.name), func(t *testing.T) {
			err := CheckUserName(tc.name)
			if tc.ok && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

// TestUserMethodsRejectInvalidNames checks every method validates the
// name before touching the database.
func TestUserMethodsRejectInvalidNames(t *testing.T) {
	s := openStore(t, Options{})
	for _, name := range []string{"", "a/b", "+", "#", "x\x00", strings.Repeat("n", 257)} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			calls := map[string]error{
				"PutUser":          s.PutUser(bg, &User{Name: name}),
				"CreateUser":       s.CreateUser(bg, &User{Name: name}),
				"DeleteUser":       s.DeleteUser(bg, name),
				"ReleaseClientIDs": s.ReleaseClientIDs(bg, name),
				"ListClientIDs":    s.ListClientIDs(name, func(string) error { return nil }),
			}
			_, calls["GetUser"] = s.GetUser(name)
			_, calls["ClaimClientID"] = s.ClaimClientID(bg, "c", name)
			for call, err := range calls {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("%s: got %v, want ErrInvalid", call, err)
				}
			}
		})
	}
	if _, err := s.ClaimClientID(bg, "", "alice"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ClaimClientID empty client id: %v", err)
	}
	if err := s.PutUser(bg, &User{Name: "alice", PasswordHash: []byte("plain text")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutUser with a non-bcrypt hash: %v", err)
	}
}

func TestUserCRUD(t *testing.T) {
	clk := newClock()
	s := openStore(t, Options{Now: clk.Now})
	if _, err := s.GetUser("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetUser missing: %v", err)
	}
	hash := testHash(t, "secret")
	carol := &User{Name: "carol"}
	for _, u := range []*User{
		carol,
		{Name: "alice", PasswordHash: hash, Admin: true},
		{Name: "bob", PasswordHash: hash, Created: 42},
	} {
		if err := s.CreateUser(bg, u); err != nil {
			t.Fatalf("CreateUser %s: %v", u.Name, err)
		}
	}
	if carol.Created != 0 {
		t.Fatal("CreateUser modified its argument")
	}
	created := clk.Now().UnixNano()
	tests := []struct {
		name string
		want *User
	}{
		{"alice", &User{Name: "alice", PasswordHash: hash, Admin: true, Created: created}},
		{"bob", &User{Name: "bob", PasswordHash: hash, Created: 42}},
		{"carol", &User{Name: "carol", Created: created}},
	}
	for _, tc := range tests {
		got, err := s.GetUser(tc.name)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("GetUser(%s) = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}

	if err := s.CreateUser(bg, &User{Name: "alice"}); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateUser existing: %v", err)
	}
	// PutUser replaces; a zero Created keeps the old one.
	clk.Advance(time.Hour)
	hash2 := testHash(t, "other")
	if err := s.PutUser(bg, &User{Name: "alice", PasswordHash: hash2}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetUser("alice")
	if err != nil || got.Admin || got.Created != created || !bytes.Equal(got.PasswordHash, hash2) {
		t.Fatalf("after PutUser: %+v, %v", got, err)
	}
	// PutUser of a new user sets Created from the store's clock.
	if err := s.PutUser(bg, &User{Name: "dave"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetUser("dave"); err != nil || got.Created != clk.Now().UnixNano() {
		t.Fatalf("dave: %+v, %v", got, err)
	}

	var names []string
	if err := s.ListUsers(func(u *User) error { names = append(names, u.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"alice", "bob", "carol", "dave"}) {
		t.Fatalf("ListUsers = %v", names)
	}
	stop := errors.New("stop")
	if err := s.ListUsers(func(*User) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ListUsers error: %v", err)
	}

	if err := s.DeleteUser(bg, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser("bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.DeleteUser(bg, "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteUser missing: %v", err)
	}
	// Users do not show up as sessions and the other way round.
	if err := s.PutSession(bg, &Session{ClientID: "alice"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.ListSessions(func(*Session) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("ListSessions: %d, %v", n, err)
	}
}

func TestUsersAndOwnersSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: zerolog.New(tWriter{t}).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	hash := testHash(t, "pw")
	if err := s.CreateUser(bg, &User{Name: "alice", PasswordHash: hash, Admin: true, Created: 7}); err != nil {
		t.Fatal(err)
	}
	if owner, err := s.ClaimClientID(bg, "phone", "alice"); err != nil || owner != "alice" {
		t.Fatalf("claim: %q, %v", owner, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Options{Dir: dir})
	u, err := s.GetUser("alice")
	if err != nil || !reflect.DeepEqual(u, &User{Name: "alice", PasswordHash: hash, Admin: true, Created: 7}) {
		t.Fatalf("after reopen: %+v, %v", u, err)
	}
	if owner, err := s.ClaimClientID(bg, "phone", "bob"); err != nil || owner != "alice" {
		t.Fatalf("claim by bob after reopen: %q, %v", owner, err)
	}
	if owner, err := s.ClientIDOwner("phone"); err != nil || owner != "alice" {
		t.Fatalf("ClientIDOwner: %q, %v", owner, err)
	}
}

func TestClaimClientID(t *testing.T) {
	s := openStore(t, Options{})
	if _, err := s.ClientIDOwner("c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ClientIDOwner unclaimed: %v", err)
	}
	steps := []struct {
		clientID, user, want string
	}{
		{"c", "alice", "alice"},
		{"c", "alice", "alice"}, // reclaim by the owner
		{"c", "bob", "alice"},
		{"d", "bob", "bob"},
		{"c/with/slashes", "bob", "bob"}, // client IDs are not user names
	}
	for _, st := range steps {
		got, err := s.ClaimClientID(bg, st.clientID, st.user)
		if err != nil || got != st.want {
			t.Fatalf("ClaimClientID(%q, %q) = %q, %v; want %q", st.clientID, st.user, got, err, st.want)
		}
	}
	var ids []string
	if err := s.ListClientIDs("bob", func(id string) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"c/with/slashes", "d"}) {
		t.Fatalf("ListClientIDs(bob) = %v", ids)
	}
}

// TestKnownUser: a user is known by a user record or by a client ID it
// owns (JWT and certificate users have no record); a name that is only the
// prefix of a known one is not.
func TestKnownUser(t *testing.T) {
	s := openStore(t, Options{})
	known := func(name string) bool {
		t.Helper()
		ok, err := s.KnownUser(name)
		if err != nil {
			t.Fatalf("KnownUser(%q): %v", name, err)
		}
		return ok
	}
	if known("alice") || known("jwt-user") {
		t.Fatal("a user known in an empty store")
	}
	if err := s.PutUser(bg, &User{Name: "alice", PasswordHash: testHash(t, "secret")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimClientID(bg, "phone", "jwt-user"); err != nil {
		t.Fatal(err)
	}
	if !known("alice") || !known("jwt-user") || known("jwt") || known("alic") {
		t.Fatal("KnownUser wrong after a user record and a claim")
	}
	if _, err := s.KnownUser("a/b"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("KnownUser of an invalid name: %v", err)
	}
}

// TestClaimClientIDConcurrent races 8 users for each of several client
// IDs: exactly one wins each, and every caller is told the same owner.
func TestClaimClientIDConcurrent(t *testing.T) {
	s := openStore(t, Options{})
	const users, clientIDs = 8, 10
	owners := make([][users]string, clientIDs)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for c := range clientIDs {
		for u := range users {
			wg.Go(func() {
				<-start
				owner, err := s.ClaimClientID(bg, fmt.Sprintf("dev-%d", c), fmt.Sprintf("user-%d", u))
				if err != nil {
					t.Errorf("claim: %v", err)
				}
				owners[c][u] = owner
			})
		}
	}
	close(start)
	wg.Wait()
	for c, got := range owners {
		winner := got[0]
		wins := 0
		for u, owner := range got {
			if owner != winner {
				t.Errorf("dev-%d: user-%d was told %q, user-0 %q", c, u, owner, winner)
			}
			if owner == fmt.Sprintf("user-%d", u) {
				wins++
			}
		}
		if wins != 1 {
			t.Errorf("dev-%d: %d winners (%v)", c, wins, got)
		}
		if stored, err := s.ClientIDOwner(fmt.Sprintf("dev-%d", c)); err != nil || stored != winner {
			t.Errorf("dev-%d stored owner %q, %v; want %q", c, stored, err, winner)
		}
	}
}

// TestDeleteUserReleasesClientIDs deletes a user owning more client IDs
// than one release chunk holds: all of them become free, and nobody
// else's are touched (including a user whose name is a prefix).
func TestDeleteUserReleasesClientIDs(t *testing.T) {
	s := openStore(t, Options{})
	for _, name := range []string{"al", "alice", "bob"} {
		if err := s.CreateUser(bg, &User{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 2*releaseChunk + 3
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.ClaimClientID(bg, fmt.Sprintf("alice-%04d", i), "alice")
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for id, user := range map[string]string{"al-1": "al", "bob-1": "bob"} {
		if _, err := s.ClaimClientID(bg, id, user); err != nil {
			t.Fatal(err)
		}
	}
	count := func(user string) int {
		k := 0
		if err := s.ListClientIDs(user, func(string) error { k++; return nil }); err != nil {
			t.Fatal(err)
		}
		return k
	}
	if got := count("alice"); got != n {
		t.Fatalf("alice owns %d, want %d", got, n)
	}

	if err := s.DeleteUser(bg, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := count("alice"); got != 0 {
		t.Fatalf("alice still owns %d client IDs", got)
	}
	for i := range n {
		if _, err := s.ClientIDOwner(fmt.Sprintf("alice-%04d", i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("alice-%04d: %v", i, err)
		}
	}
	if owner, err := s.ClaimClientID(bg, "alice-0000", "bob"); err != nil || owner != "bob" {
		t.Fatalf("bob claims a released id: %q, %v", owner, err)
	}
	for id, user := range map[string]string{"al-1": "al", "bob-1": "bob"} {
		if owner, err := s.ClientIDOwner(id); err != nil || owner != user {
			t.Fatalf("%s: %q, %v; want %q", id, owner, err, user)
		}
	}
	if count("al") != 1 || count("bob") != 2 {
		t.Fatalf("al owns %d, bob %d", count("al"), count("bob"))
	}
}

func TestPassword(t *testing.T) {
	long := bytes.Repeat([]byte("p"), 72)
	for _, tc := range []struct {
		name    string
		pw      []byte
		wantErr bool
	}{
		{"ascii", []byte("correct horse battery staple"), false},
		{"72 bytes", long, false},
		{"empty", nil, true},
		{"73 bytes", append(bytes.Clone(long), 'x'), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := HashPassword(tc.pw)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cost, err := bcrypt.Cost(h); err != nil || cost != 10 {
				t.Fatalf("cost %d, %v", cost, err)
			}
			if !CheckPassword(h, tc.pw) {
				t.Fatal("the password does not match its hash")
			}
			wrong := bytes.Clone(tc.pw)
			wrong[0] ^= 1
			if CheckPassword(h, wrong) {
				t.Fatal("a wrong password matches")
			}
			// bcrypt ignores bytes past 72: CheckPassword must not.
			if CheckPassword(h, append(bytes.Clone(tc.pw), bytes.Repeat([]byte("x"), 73)...)) {
				t.Fatal("a password over 72 bytes matches")
			}
			if CheckPassword(h, nil) {
				t.Fatal("an empty password matches")
			}
		})
	}
	if CheckPassword([]byte("not a hash"), []byte("pw")) || CheckPassword(nil, []byte("pw")) {
		t.Fatal("a malformed hash matches")
	}
}

func TestUserEncoding(t *testing.T) {
	for _, u := range []*User{
		{Name: "a"},
		{Name: "alice", PasswordHash: []byte("$2a$10$abcdefghijklmnopqrstuv"), Admin: true, Created: 1_700_000_000_000_000_000},
		{Name: "neg", Created: -1},
	} {
		b, err := u.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got User
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, u) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, *u)
		}
	}
	b, _ := (&User{Name: "a"}).MarshalBinary()
	b[0] = userVersion + 1
	if err := new(User).UnmarshalBinary(b); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("newer version: %v", err)
	}
}

// FuzzUserDecode checks the user decoder never panics and that whatever
// it accepts re-encodes to an equal record.
func FuzzUserDecode(f *testing.F) {
	for _, u := range []*User{{}, {Name: "alice", PasswordHash: []byte("$2a$10$x"), Admin: true, Created: 1 << 60}} {
		b, _ := u.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 0, 0, 0})
	f.Add([]byte{1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var u User
		if err := u.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		out, err := u.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var u2 User
		if err := u2.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(u, u2) {
			t.Fatalf("unstable round trip: %v\n%+v\n%+v", err, u, u2)
		}
	})
}

// FuzzOwnerDecode checks the client ID owner decoder never panics.
func FuzzOwnerDecode(f *testing.F) {
	f.Add(owner{user: "alice", claimed: 1}.marshal())
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ow owner
		if err := ow.unmarshal(b); err != nil {
			return
		}
		var ow2 owner
		if err := ow2.unmarshal(ow.marshal()); err != nil || ow != ow2 {
			t.Fatalf("unstable round trip: %v", err)
		}
	})
}
