package storage

import (
	"fmt"
	"strings"

	"github.com/rs/zerolog"
)

// badgerLogger bridges Badger's printf logger into zerolog. Badger logs
// routine events (memtable flushes, compactions, replay progress) at INFO,
// which would drown the hub's own INFO logs, so INFO becomes Debug and
// DEBUG becomes Trace.
type badgerLogger struct{ l zerolog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error().Msg(trimf(f, a)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn().Msg(trimf(f, a)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug().Msg(trimf(f, a)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Trace().Msg(trimf(f, a)) }

func trimf(f string, a []any) string {
	return strings.TrimRight(fmt.Sprintf(f, a...), "\n")
}
