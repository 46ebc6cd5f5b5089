package storage

import (
	"errors"
	"testing"

	"github.com/rs/zerolog"
)

func TestSettings(t *testing.T) {
	s := openStore(t, Options{})
	if st, err := s.GetSettings("alice"); err != nil || st != (Settings{}) {
		t.Fatalf("no settings stored: %+v, %v", st, err)
	}
	if err := s.PutSettings(bg, "alice", Settings{HideLastSeen: true}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.GetSettings("alice"); err != nil || !st.HideLastSeen {
		t.Fatalf("after put: %+v, %v", st, err)
	}
	// Settings do not make a user, and users do not hide settings.
	if _, err := s.GetUser("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("settings made a user: %v", err)
	}
	if err := s.CreateUser(bg, &User{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.ListUsers(func(*User) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("ListUsers: %d, %v", n, err)
	}
	if err := s.PutSettings(bg, "alice", Settings{}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.GetSettings("alice"); err != nil || st.HideLastSeen {
		t.Fatalf("after reset: %+v, %v", st, err)
	}
	if err := s.PutSettings(bg, "a/b", Settings{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutSettings invalid name: %v", err)
	}
	if _, err := s.GetSettings(""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("GetSettings invalid name: %v", err)
	}
}

func TestSettingsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: zerolog.New(tWriter{t}).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSettings(bg, "jwt-user", Settings{HideLastSeen: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	if st, err := s.GetSettings("jwt-user"); err != nil || !st.HideLastSeen {
		t.Fatalf("after reopen: %+v, %v", st, err)
	}
}

func TestSettingsEncoding(t *testing.T) {
	for _, st := range []Settings{{}, {HideLastSeen: true}} {
		b, _ := st.MarshalBinary()
		var got Settings
		if err := got.UnmarshalBinary(b); err != nil || got != st {
			t.Fatalf("round trip %+v: %+v, %v", st, got, err)
		}
	}
	for _, b := range [][]byte{nil, {settingsVersion}, {settingsVersion, 0x80}, {settingsVersion, 0, 0}} {
		if err := new(Settings).UnmarshalBinary(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%v: %v, want ErrCorrupt", b, err)
		}
	}
	if err := new(Settings).UnmarshalBinary([]byte{settingsVersion + 1, 0}); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("newer version: %v", err)
	}
}

// FuzzSettingsUnmarshal checks the settings decoder never panics and
// re-encodes what it accepts to the same bytes.
func FuzzSettingsUnmarshal(f *testing.F) {
	f.Add([]byte{settingsVersion, settingsFlagHideLastSeen})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var st Settings
		if err := st.UnmarshalBinary(b); err != nil {
			return
		}
		out, _ := st.MarshalBinary()
		if string(out) != string(b) {
			t.Fatalf("%v re-encodes to %v", b, out)
		}
	})
}
