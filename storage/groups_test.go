package storage

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

func TestCheckGroupName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"team", true},
		{"Zoë-日本 team", true},
		{strings.Repeat("g", MaxGroupNameLen), true},
		{"", false},
		{strings.Repeat("g", MaxGroupNameLen+1), false},
		{"a/b", false},
		{"a+", false},
		{"#", false},
		{"nl\n", false},
		{"bad\xff", false},
	} {
		err := CheckGroupName(tc.name)
		if tc.ok && err != nil {
			t.Errorf("%q rejected: %v", tc.name, err)
		}
		if !tc.ok && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "group name")) {
			t.Errorf("%q: got %v, want ErrInvalid naming the group name", tc.name, err)
		}
	}
}

// TestGroupMethodsRejectInvalidNames checks every method validates names
// and titles before touching the database.
func TestGroupMethodsRejectInvalidNames(t *testing.T) {
	s := openStore(t, Options{})
	noop := func(*Group) error { return nil }
	calls := map[string]error{
		"CreateGroup bad name":   s.CreateGroup(bg, &Group{Name: "a/b", Owner: "alice"}),
		"CreateGroup bad owner":  s.CreateGroup(bg, &Group{Name: "team", Owner: "al+ce"}),
		"CreateGroup no owner":   s.CreateGroup(bg, &Group{Name: "team"}),
		"CreateGroup bad member": s.CreateGroup(bg, &Group{Name: "team", Owner: "alice", Members: []string{"bob", "x#"}}),
		"CreateGroup long title": s.CreateGroup(bg, &Group{Name: "team", Owner: "alice", Title: strings.Repeat("t", MaxGroupTitleLen+1)}),
		"CreateGroup ctl title":  s.CreateGroup(bg, &Group{Name: "team", Owner: "alice", Title: "a\nb"}),
		"CreateGroup utf8 title": s.CreateGroup(bg, &Group{Name: "team", Owner: "alice", Title: "\xff"}),
		"DeleteGroup":            s.DeleteGroup(bg, ""),
	}
	_, calls["GetGroup"] = s.GetGroup("+")
	_, calls["UpdateGroup"] = s.UpdateGroup(bg, "a/b", noop)
	for call, err := range calls {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", call, err)
		}
	}
	n := 0
	if err := s.ListGroups(func(*Group) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("invalid groups were stored: %d, %v", n, err)
	}
	// The longest title is fine.
	if err := s.CreateGroup(bg, &Group{Name: "team", Owner: "alice", Title: strings.Repeat("t", MaxGroupTitleLen)}); err != nil {
		t.Fatal(err)
	}
}

func TestGroupCRUD(t *testing.T) {
	clk := newClock()
	s := openStore(t, Options{Now: clk.Now})
	if _, err := s.GetGroup("team"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetGroup missing: %v", err)
	}

	members := []string{"carol", "bob", "carol", "alice"}
	g := &Group{Name: "team", Title: "The Team", Owner: "dave", Members: members}
	if err := s.CreateGroup(bg, g); err != nil {
		t.Fatal(err)
	}
	want := &Group{Name: "team", Title: "The Team", Owner: "dave", Members: []string{"alice", "bob", "carol", "dave"}, Created: clk.Now().UnixNano()}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("CreateGroup set\n %+v\nwant %+v", g, want)
	}
	if !slices.Equal(members, []string{"carol", "bob", "carol", "alice"}) {
		t.Fatalf("CreateGroup reordered the caller's slice: %v", members)
	}
	if got, err := s.GetGroup("team"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetGroup = %+v, %v; want %+v", got, err, want)
	}
	if err := s.CreateGroup(bg, &Group{Name: "team", Owner: "eve"}); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateGroup existing: %v", err)
	}
	// A given Created is kept; an owner-only group has the owner as member.
	if err := s.CreateGroup(bg, &Group{Name: "solo", Owner: "eve", Created: 42}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetGroup("solo"); err != nil || got.Created != 42 || !slices.Equal(got.Members, []string{"eve"}) {
		t.Fatalf("solo: %+v, %v", got, err)
	}

	// UpdateGroup: Name and Created cannot change; the result is
	// normalised and stored.
	got, err := s.UpdateGroup(bg, "team", func(g *Group) error {
		g.Name = "other"
		g.Created = 1
		g.Title = "Renamed"
		g.Members = append(g.Members, "zed", "bob")
		g.Owner = "alice"
		return nil
	})
	want = &Group{Name: "team", Title: "Renamed", Owner: "alice", Members: []string{"alice", "bob", "carol", "dave", "zed"}, Created: want.Created}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("UpdateGroup = %+v, %v; want %+v", got, err, want)
	}
	if stored, err := s.GetGroup("team"); err != nil || !reflect.DeepEqual(stored, want) {
		t.Fatalf("after update: %+v, %v", stored, err)
	}
	if _, err := s.GetGroup("other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the update renamed the key: %v", err)
	}
	// fn's error aborts; an invalid result aborts; neither writes.
	stop := errors.New("stop")
	if _, err := s.UpdateGroup(bg, "team", func(g *Group) error { g.Title = "x"; return stop }); !errors.Is(err, stop) {
		t.Fatalf("UpdateGroup fn error: %v", err)
	}
	if _, err := s.UpdateGroup(bg, "team", func(g *Group) error { g.Members = append(g.Members, "a/b"); return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("UpdateGroup invalid member: %v", err)
	}
	if _, err := s.UpdateGroup(bg, "team", func(*Group) error { panic("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("UpdateGroup panicking fn: %v", err)
	}
	if stored, err := s.GetGroup("team"); err != nil || !reflect.DeepEqual(stored, want) {
		t.Fatalf("after aborted updates: %+v, %v", stored, err)
	}
	if _, err := s.UpdateGroup(bg, "missing", func(*Group) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateGroup missing: %v", err)
	}

	var names []string
	if err := s.ListGroups(func(g *Group) error { names = append(names, g.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"solo", "team"}) {
		t.Fatalf("ListGroups = %v", names)
	}
	if err := s.ListGroups(func(*Group) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ListGroups error: %v", err)
	}

	if err := s.DeleteGroup(bg, "team"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetGroup("team"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.DeleteGroup(bg, "team"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteGroup missing: %v", err)
	}
	// Groups are not users, and the other way round.
	if err := s.CreateUser(bg, &User{Name: "solo"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.ListUsers(func(*User) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("ListUsers: %d, %v", n, err)
	}
	names = nil
	if err := s.ListGroups(func(g *Group) error { names = append(names, g.Name); return nil }); err != nil || !slices.Equal(names, []string{"solo"}) {
		t.Fatalf("ListGroups after delete = %v, %v", names, err)
	}
}

// TestUpdateGroupConcurrent runs 20 updates adding a member each at once:
// the read-modify-write is atomic, so none is lost.
func TestUpdateGroupConcurrent(t *testing.T) {
	s := openStore(t, Options{})
	if err := s.CreateGroup(bg, &Group{Name: "team", Owner: "owner"}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, err := s.UpdateGroup(bg, "team", func(g *Group) error {
				g.Members = append(g.Members, fmt.Sprintf("user-%02d", i))
				return nil
			})
			if err != nil {
				t.Errorf("UpdateGroup: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	g, err := s.GetGroup("team")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Members) != n+1 {
		t.Fatalf("%d members, want %d: %v", len(g.Members), n+1, g.Members)
	}
	for i := range n {
		if _, ok := slices.BinarySearch(g.Members, fmt.Sprintf("user-%02d", i)); !ok {
			t.Errorf("user-%02d lost", i)
		}
	}
}

func TestGroupsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: zerolog.New(tWriter{t}).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	g := &Group{Name: "team", Title: "T", Owner: "alice", Members: []string{"bob"}}
	if err := s.CreateGroup(bg, g); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	if got, err := s.GetGroup("team"); err != nil || !reflect.DeepEqual(got, g) {
		t.Fatalf("after reopen: %+v, %v; want %+v", got, err, g)
	}
}

func TestGroupEncoding(t *testing.T) {
	for _, g := range []*Group{
		{Name: "g"},
		{Name: "team", Title: "Team ✓", Owner: "alice", Members: []string{"alice", "bob"}, Created: 1_700_000_000_000_000_000},
		{Name: "neg", Owner: "o", Members: []string{"o"}, Created: -1},
	} {
		b, err := g.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Group
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, g) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, *g)
		}
		if err := new(Group).UnmarshalBinary(b[:len(b)-1]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated: %v", err)
		}
	}
	b, _ := (&Group{Name: "g"}).MarshalBinary()
	b[0] = groupVersion + 1
	if err := new(Group).UnmarshalBinary(b); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("newer version: %v", err)
	}
}

// FuzzGroupUnmarshal checks the group decoder never panics and that
// whatever it accepts re-encodes to an equal record.
func FuzzGroupUnmarshal(f *testing.F) {
	for _, g := range []*Group{{}, {Name: "team", Title: "T", Owner: "a", Members: []string{"a", "b"}, Created: 1 << 60}} {
		b, _ := g.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var g Group
		if err := g.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		out, err := g.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var g2 Group
		if err := g2.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(g, g2) {
			t.Fatalf("unstable round trip: %v\n%+v\n%+v", err, g, g2)
		}
	})
}
