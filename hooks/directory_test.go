package hooks

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqhub/mqhub/storage"
)

// openDirStore opens a real store in dir; closeFn closes it once (the
// cleanup does nothing after an explicit close).
func openDirStore(t *testing.T, dir string) (s *storage.Store, closeFn func()) {
	t.Helper()
	s, err := storage.Open(storage.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeFn = func() {
		once.Do(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(closeFn)
	return s, closeFn
}

func newTestDirectory(t *testing.T, maxMembers int) *Directory {
	t.Helper()
	s, _ := openDirStore(t, t.TempDir())
	d, err := NewDirectory(s, maxMembers)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDirectoryGroups(t *testing.T) {
	ctx := testCtx(t)
	d := newTestDirectory(t, 0)

	g, err := d.CreateGroup(ctx, "team", "The Team", "alice", []string{"bob", "carol", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "team" || g.Title != "The Team" || g.Owner != "alice" || g.Created == 0 ||
		!slices.Equal(g.Members, []string{"alice", "bob", "carol"}) {
		t.Fatalf("CreateGroup = %+v", g)
	}
	if _, err := d.CreateGroup(ctx, "team", "", "eve", nil); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("CreateGroup existing: %v", err)
	}
	if _, err := d.CreateGroup(ctx, "a/b", "", "eve", nil); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("CreateGroup invalid name: %v", err)
	}
	if _, err := d.CreateGroup(ctx, "x", "", "eve", []string{"#"}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("CreateGroup invalid member: %v", err)
	}
	if _, err := d.CreateGroup(ctx, "solo", "", "dave", nil); err != nil {
		t.Fatal(err)
	}

	if got, ok := d.Group("team"); !ok || !reflect.DeepEqual(got, g) {
		t.Fatalf("Group = %+v, %v; want %+v", got, ok, g)
	}
	// Group returns a copy.
	got, _ := d.Group("team")
	got.Members[0] = "mallory"
	if d.IsMember("team", "mallory") || !d.IsMember("team", "alice") {
		t.Fatal("Group's result aliases the cache")
	}
	if _, ok := d.Group("nope"); ok {
		t.Fatal("Group of a missing group")
	}
	if !d.IsMember("team", "bob") || d.IsMember("team", "dave") || d.IsMember("nope", "alice") {
		t.Fatal("IsMember wrong")
	}
	if gs := d.Groups(); !slices.Equal(gs, []string{"solo", "team"}) {
		t.Fatalf("Groups = %v", gs)
	}
	if gs := d.GroupsOf("dave"); !slices.Equal(gs, []string{"solo"}) {
		t.Fatalf("GroupsOf(dave) = %v", gs)
	}

	g, err = d.RenameGroup(ctx, "team", "Renamed")
	if err != nil || g.Title != "Renamed" || g.Name != "team" {
		t.Fatalf("RenameGroup = %+v, %v", g, err)
	}
	if cur, _ := d.Group("team"); cur.Title != "Renamed" {
		t.Fatalf("cache after rename: %+v", cur)
	}
	if _, err := d.RenameGroup(ctx, "nope", "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RenameGroup missing: %v", err)
	}

	g, err = d.AddMembers(ctx, "team", []string{"dave", "bob"})
	if err != nil || !slices.Equal(g.Members, []string{"alice", "bob", "carol", "dave"}) {
		t.Fatalf("AddMembers = %+v, %v", g, err)
	}
	if gs := d.GroupsOf("dave"); !slices.Equal(gs, []string{"solo", "team"}) {
		t.Fatalf("GroupsOf(dave) after add = %v", gs)
	}
	if _, err := d.AddMembers(ctx, "team", []string{"a/b"}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("AddMembers invalid: %v", err)
	}

	g, err = d.RemoveMembers(ctx, "team", []string{"dave", "nobody"})
	if err != nil || !slices.Equal(g.Members, []string{"alice", "bob", "carol"}) {
		t.Fatalf("RemoveMembers = %+v, %v", g, err)
	}
	if d.IsMember("team", "dave") || !slices.Equal(d.GroupsOf("dave"), []string{"solo"}) {
		t.Fatal("dave still a member of team in memory")
	}
	if _, err := d.RemoveMembers(ctx, "team", []string{"bob", "alice"}); !errors.Is(err, ErrOwner) {
		t.Fatalf("RemoveMembers owner: %v", err)
	}
	if !d.IsMember("team", "bob") {
		t.Fatal("a refused RemoveMembers removed bob")
	}
	if _, err := d.RemoveMembers(ctx, "nope", []string{"bob"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RemoveMembers missing group: %v", err)
	}

	if err := d.DeleteGroup(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteGroup(ctx, "team"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteGroup twice: %v", err)
	}
	if d.IsMember("team", "alice") || len(d.GroupsOf("alice")) != 0 || !slices.Equal(d.Groups(), []string{"solo"}) {
		t.Fatalf("team still in memory: %v %v", d.GroupsOf("alice"), d.Groups())
	}
}

func TestDirectoryGroupFull(t *testing.T) {
	ctx := testCtx(t)
	d := newTestDirectory(t, 3)
	// The owner counts; duplicates do not.
	if _, err := d.CreateGroup(ctx, "big", "", "alice", []string{"b", "c", "d"}); !errors.Is(err, ErrGroupFull) {
		t.Fatalf("CreateGroup over the limit: %v", err)
	}
	if _, ok := d.Group("big"); ok {
		t.Fatal("a refused group is in memory")
	}
	if _, err := d.CreateGroup(ctx, "team", "", "alice", []string{"b", "b", "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddMembers(ctx, "team", []string{"c", "d"}); !errors.Is(err, ErrGroupFull) {
		t.Fatalf("AddMembers over the limit: %v", err)
	}
	if d.IsMember("team", "c") {
		t.Fatal("a refused AddMembers added c")
	}
	// Up to the limit is fine; re-adding members to a full group too.
	if g, err := d.AddMembers(ctx, "team", []string{"c"}); err != nil || len(g.Members) != 3 {
		t.Fatalf("AddMembers to the limit: %+v, %v", g, err)
	}
	if _, err := d.AddMembers(ctx, "team", []string{"b", "c"}); err != nil {
		t.Fatalf("AddMembers of members of a full group: %v", err)
	}
}

// TestDirectoryConcurrentAddMembers adds 20 members at once: the store's
// atomic update and the per-group lock lose none, in the store or in
// memory.
func TestDirectoryConcurrentAddMembers(t *testing.T) {
	ctx := testCtx(t)
	s, _ := openDirStore(t, t.TempDir())
	d, err := NewDirectory(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateGroup(ctx, "team", "", "owner", nil); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			if _, err := d.AddMembers(ctx, "team", []string{fmt.Sprintf("user-%02d", i)}); err != nil {
				t.Errorf("AddMembers: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	g, _ := d.Group("team")
	stored, err := s.GetGroup("team")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Members) != n+1 || !slices.Equal(g.Members, stored.Members) {
		t.Fatalf("memory %d members %v, store %v", len(g.Members), g.Members, stored.Members)
	}
	for i := range n {
		if !d.IsMember("team", fmt.Sprintf("user-%02d", i)) || !slices.Contains(d.GroupsOf(fmt.Sprintf("user-%02d", i)), "team") {
			t.Errorf("user-%02d lost", i)
		}
	}
}

func TestDirectoryBlocks(t *testing.T) {
	ctx := testCtx(t)
	d := newTestDirectory(t, 0)
	if d.Blocked("alice", "eve") {
		t.Fatal("blocked before Block")
	}
	for _, b := range []string{"eve", "mallory", "eve"} {
		if err := d.Block(ctx, "alice", b); err != nil {
			t.Fatal(err)
		}
	}
	if !d.Blocked("alice", "eve") || d.Blocked("eve", "alice") || d.Blocked("alice", "bob") {
		t.Fatal("Blocked wrong")
	}
	if got := d.BlockedBy("alice"); !slices.Equal(got, []string{"eve", "mallory"}) {
		t.Fatalf("BlockedBy = %v", got)
	}
	if err := d.Block(ctx, "alice", "alice"); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("Block self: %v", err)
	}
	if err := d.Unblock(ctx, "alice", "eve"); err != nil {
		t.Fatal(err)
	}
	if d.Blocked("alice", "eve") {
		t.Fatal("still blocked after Unblock")
	}
	if err := d.Unblock(ctx, "alice", "eve"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Unblock twice: %v", err)
	}
	if got := d.BlockedBy("nobody"); len(got) != 0 {
		t.Fatalf("BlockedBy(nobody) = %v", got)
	}
}

func TestDirectorySettings(t *testing.T) {
	ctx := testCtx(t)
	s, _ := openDirStore(t, t.TempDir())
	// Stored before the Directory exists: loaded lazily.
	if err := s.PutSettings(ctx, "bob", storage.Settings{HideLastSeen: true}); err != nil {
		t.Fatal(err)
	}
	d, err := NewDirectory(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Settings("bob").HideLastSeen || d.Settings("alice").HideLastSeen {
		t.Fatal("Settings wrong")
	}
	if d.Settings("") != (storage.Settings{}) {
		t.Fatal("Settings of an invalid name")
	}

	type call struct {
		user string
		st   storage.Settings
	}
	calls := make(chan call, 10)
	d.OnSettings(func(user string, st storage.Settings) { calls <- call{user, st} })
	if err := d.SetSettings(ctx, "alice", storage.Settings{HideLastSeen: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-calls:
		if c != (call{"alice", storage.Settings{HideLastSeen: true}}) {
			t.Fatalf("listener got %+v", c)
		}
	default:
		t.Fatal("listener not called by the time SetSettings returned")
	}
	if !d.Settings("alice").HideLastSeen {
		t.Fatal("cache not updated")
	}
	if st, err := s.GetSettings("alice"); err != nil || !st.HideLastSeen {
		t.Fatalf("store not updated: %+v, %v", st, err)
	}
	if err := d.SetSettings(ctx, "a/b", storage.Settings{}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("SetSettings invalid: %v", err)
	}
	if len(calls) != 0 {
		t.Fatal("listener called for a failed SetSettings")
	}
}

// TestDirectoryReload reopens the store: a new Directory shows the same
// groups, blocks and settings.
func TestDirectoryReload(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	s, closeStore := openDirStore(t, dir)
	d, err := NewDirectory(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateGroup(ctx, "team", "Team", "alice", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateGroup(ctx, "ops", "", "carol", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddMembers(ctx, "ops", []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Block(ctx, "bob", "eve"); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSettings(ctx, "bob", storage.Settings{HideLastSeen: true}); err != nil {
		t.Fatal(err)
	}
	team, _ := d.Group("team")
	ops, _ := d.Group("ops")
	closeStore()

	s2, _ := openDirStore(t, dir)
	d2, err := NewDirectory(s2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := d2.Group("team"); !ok || !reflect.DeepEqual(got, team) {
		t.Fatalf("team after reload: %+v, want %+v", got, team)
	}
	if got, ok := d2.Group("ops"); !ok || !reflect.DeepEqual(got, ops) {
		t.Fatalf("ops after reload: %+v, want %+v", got, ops)
	}
	if !slices.Equal(d2.Groups(), []string{"ops", "team"}) || !slices.Equal(d2.GroupsOf("bob"), []string{"ops", "team"}) {
		t.Fatalf("Groups %v, GroupsOf(bob) %v", d2.Groups(), d2.GroupsOf("bob"))
	}
	if !d2.Blocked("bob", "eve") || !slices.Equal(d2.BlockedBy("bob"), []string{"eve"}) {
		t.Fatal("block lost on reload")
	}
	if !d2.Settings("bob").HideLastSeen {
		t.Fatal("settings lost on reload")
	}
}

// TestDirectoryCancelled checks a call whose context is done before it
// starts changes nothing.
func TestDirectoryCancelled(t *testing.T) {
	d := newTestDirectory(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.CreateGroup(ctx, "team", "", "alice", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateGroup: %v", err)
	}
	if err := d.Block(ctx, "alice", "eve"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Block: %v", err)
	}
	if len(d.Groups()) != 0 || d.Blocked("alice", "eve") {
		t.Fatal("a cancelled call changed the directory")
	}
}

// TestDirectoryLoadError checks NewDirectory reports a store it cannot
// read.
func TestDirectoryLoadError(t *testing.T) {
	s, closeStore := openDirStore(t, t.TempDir())
	closeStore()
	if _, err := NewDirectory(s, 0); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("NewDirectory on a closed store: %v", err)
	}
}
