package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Settings are one user's privacy settings. They are a record of their
// own, u|s|name, not a field of User: users authenticated by JWT have no
// User record but have settings.
type Settings struct {
	// HideLastSeen hides the user's last_seen time from presence/{user}.
	HideLastSeen bool
}

const settingsVersion = 1

const (
	settingsFlagHideLastSeen = 1
	settingsFlagKnown        = settingsFlagHideLastSeen
)

// MarshalBinary encodes the settings: a version byte and a flags byte.
func (st Settings) MarshalBinary() ([]byte, error) {
	var flags byte
	if st.HideLastSeen {
		flags |= settingsFlagHideLastSeen
	}
	return []byte{settingsVersion, flags}, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; it never panics and
// returns an error wrapping ErrCorrupt (or ErrUnsupportedVersion) on
// malformed input. Unknown flags are corrupt rather than ignored: a newer
// writer bumps the version instead.
func (st *Settings) UnmarshalBinary(b []byte) error {
	d := dec{b: b}
	if v := d.byte("version"); d.err == nil && v != settingsVersion {
		return fmt.Errorf("%w: settings version %d", ErrUnsupportedVersion, v)
	}
	flags := d.byte("flags")
	if flags&^settingsFlagKnown != 0 {
		d.fail("settings flags")
	}
	if err := d.end(); err != nil {
		return err
	}
	*st = Settings{HideLastSeen: flags&settingsFlagHideLastSeen != 0}
	return nil
}

// GetSettings returns user's settings; a user who never stored any gets
// the zero Settings and no error.
func (s *Store) GetSettings(user string) (Settings, error) {
	if err := CheckUserName(user); err != nil {
		return Settings{}, err
	}
	var st Settings
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(settingsKey(user))
		if err != nil {
			return err
		}
		return item.Value(st.UnmarshalBinary)
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Settings{}, nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("storage: settings of %q: %w", user, err)
	}
	return st, nil
}

// PutSettings stores (or replaces) user's settings durably.
func (s *Store) PutSettings(ctx context.Context, user string, st Settings) error {
	if err := CheckUserName(user); err != nil {
		return err
	}
	v, err := st.MarshalBinary()
	if err != nil {
		return err
	}
	return s.write(ctx, []kv{{key: settingsKey(user), val: v}})
}
