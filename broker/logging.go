package broker

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// NewLogger builds the process logger from the configured level and format.
func NewLogger(cfg Config, w io.Writer) zerolog.Logger {
	if w == nil {
		w = os.Stderr
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		level = zerolog.InfoLevel
	}
	if cfg.LogFormat == LogFormatConsole {
		f, isFile := w.(*os.File)
		color := isFile && isatty.IsTerminal(f.Fd())
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !color}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// mochiLogger bridges mochi's slog output into zerolog. Mochi logs its own
// housekeeping at info and attaches whole packets (payloads included) to
// some lines; we keep it at warn unless debugging, and drop packet bodies.
func mochiLogger(zl zerolog.Logger) *slog.Logger {
	l := zl.With().Str("component", "mochi").Logger()
	if l.GetLevel() > zerolog.DebugLevel && l.GetLevel() < zerolog.WarnLevel {
		l = l.Level(zerolog.WarnLevel)
	}
	return slog.New(redactHandler{zerolog.NewSlogHandler(l)})
}

// redactHandler removes packet contents from mochi's log records: a log
// line must not carry message payloads.
type redactHandler struct{ slog.Handler }

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "pk" || a.Key == "packet" {
			return true
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return redactHandler{h.Handler.WithAttrs(attrs)}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{h.Handler.WithGroup(name)}
}
